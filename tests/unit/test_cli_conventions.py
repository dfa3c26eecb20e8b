"""The CLI's conventions as a user meets them: --version, completion, validated choices, unknown flags, overrides, help."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from gymctl.cli.main import app
from gymctl.cli.ng import ng_command
from tests.conftest import EXAMPLE_CONFIG, SCRIPTED_CONFIG
from tests.unit.cli_runner import invoke

CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]


def test_version_prints_name_and_version():
    from gymctl import __version__

    r = invoke("--version")
    assert r.code == 0 and r.err == ""
    assert re.fullmatch(r"gymctl \d+\.\d+\.\d+\S*\n", r.out), r.out
    assert r.out.split()[1].startswith(__version__.split("+")[0].rsplit(".", 1)[0])


@pytest.mark.parametrize("verb,prog", [("run", "ng_run"), ("status", "ng_status"), ("collect", "ng_collect_rollouts")])
def test_ng_commands_have_version(verb, prog):
    r = invoke("--version", command=ng_command(verb), prog=prog)
    assert r.code == 0 and r.out.startswith("gymctl "), r.out + r.err


def test_completion_is_offered_and_completes_choices():
    help_text = invoke("--help").out
    assert "--install-completion" in help_text and "--show-completion" in help_text
    r = invoke(env={"_GYMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "gymctl run --topology ", "COMP_CWORD": "3"})
    assert r.code == 0 and r.out.split() == ["all-in-one", "separated", "ray"], r.out + r.err
    r = invoke(env={"_GYMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "gymctl re", "COMP_CWORD": "1"})
    assert r.out.split() == ["render", "restart"]


def test_help_epilog_lists_the_exit_codes():
    from gymctl.cli.errors import EXIT_CODES

    text = " ".join(invoke("--help").out.split())
    assert set(EXIT_CODES) == {0, 1, 2, 130}
    for code in ("0 ok", "1 failure", "2 usage or config error", "130 interrupted"):
        assert code in text, text


BAD_CHOICES = [
    (["run", "--topology", "bogus"], "--topology 'bogus' is not known; choose one of: all-in-one, separated"),
    (["run", "--log-level", "bogus"], "--log-level 'bogus' is not known; choose one of: critical, error, warning, info, debug, trace"),
    (["run", "--restart", "sometimes"], "--restart 'sometimes' is not known; choose one of: no, on-failure"),
    (["serve", "head", "--log-level", "loud"], "--log-level 'loud' is not known; choose one of:"),
    (["render", "-t", "kubernetes"], "--topology 'kubernetes' is not known; choose one of: all-in-one, separated, multi-host, swarm"),
    (["up", "-t", "kubernetes"], "--topology 'kubernetes' is not known"),
    (["build", "--topology", "kubernetes"], "--topology 'kubernetes' is not known"),
    (["down", "-t", "kubernetes"], "--topology 'kubernetes' is not known"),
]


@pytest.mark.parametrize("args,line", BAD_CHOICES, ids=[" ".join(a) for a, _ in BAD_CHOICES])
def test_a_bad_choice_is_a_usage_error_listing_the_choices(args, line):
    r = invoke(*args, *CONFIG)
    assert r.code == 2, r.err
    assert r.err.startswith(f"UsageError: {line}"), r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err + r.out


def test_help_shows_the_choices():
    run_help = invoke("run", "--help", env={"COLUMNS": "250"}).out
    for choices in ("all-in-one|separated", "no|on-failure", "critical|error|warning|info|debug|trace"):
        assert choices in run_help, run_help
    for verb in ("render", "up", "build", "down", "ps"):
        assert "all-in-one|separated" in invoke(verb, "--help", env={"COLUMNS": "250"}).out, verb


def test_log_level_is_case_insensitive_and_knows_trace():
    import logging

    r = invoke("run", "--log-level", "TRACE", "-c", "no/such/file.yaml")  # parsing passes; the config is what fails
    assert r.code == 2 and r.err.startswith("ConfigError: "), r.err
    assert logging.getLevelName("TRACE") == 5  # so logging.basicConfig(level="TRACE") works as uvicorn's level


@pytest.mark.parametrize("verb", ["run", "serve", "status", "collect", "build", "render", "up", "down", "ps", "logs", "restart"])
def test_a_mistyped_flag_is_a_usage_error_with_a_hint(verb):
    args = [verb, *(["head"] if verb == "serve" else ["policy_model"] if verb == "restart" else []), "--confg", "x.yaml"]
    r = invoke(*args)
    assert r.code == 2, r.err
    assert r.err.startswith("UsageError: unknown option '--confg'; did you mean '--config'?"), r.err
    assert f"gymctl {verb} --help" in r.err and "Traceback" not in r.err


def test_a_mistyped_verb_gets_a_hint():
    r = invoke("rnu")
    assert r.code == 2 and r.err.startswith("UsageError: unknown command 'rnu'; did you mean 'run'?"), r.err


def test_overrides_still_pass_as_arguments():
    r = invoke("render", f"+config_paths=[{EXAMPLE_CONFIG},{SCRIPTED_CONFIG}]", "++head_server.port=12999", "-t", "separated")
    assert r.code == 0, r.err
    assert "12999" in r.out and "services:" in r.out
    r = invoke("render", *CONFIG, "head_server.port=12998")  # Hydra's bare k=v too
    assert r.code == 0 and "12998" in r.out, r.err


def test_a_word_that_is_not_an_override_is_still_named():
    r = invoke("run", *CONFIG, "policy_base_url")
    assert r.code == 2 and "UsageError: argument 'policy_base_url' is not an override" in r.err, r.err


def test_collect_reads_nemo_gym_arguments(tmp_path):
    missing = tmp_path / "missing.jsonl"
    r = invoke("--ng", "+agent_name=a", f"+input_jsonl_fpath={missing}", f"+output_jsonl_fpath={tmp_path / 'o.jsonl'}",
               command=ng_command("collect"), prog="ng_collect_rollouts")
    assert r.code != 0 and str(missing) in r.err and "Traceback" not in r.err, r.err  # the arguments were read


@pytest.mark.parametrize("verb,prog,usage", [
    ("status", "ng_status", "Usage: ng_status [OPTIONS] [OVERRIDES]..."),
    ("run", "ng_run", "Usage: ng_run [OPTIONS] [OVERRIDES]..."),
    ("collect", "ng_collect_rollouts", "Usage: ng_collect_rollouts [OPTIONS] [OVERRIDES]..."),
])
def test_ng_usage_lines_name_the_command_alone(verb, prog, usage):
    r = invoke("--help", command=ng_command(verb), prog=prog)
    assert r.code == 0 and usage in r.out, r.out
    assert f"{prog} {verb}" not in r.out
    assert "--version" in r.out and "--install-completion" not in r.out  # completion is gymctl's, not each ng_* command's


def _verbs(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from _verbs(cmd, (*prefix, name))


def test_every_verb_has_help():
    import typer.main

    verbs = list(_verbs(typer.main.get_command(app)))
    assert {("run",), ("down",), ("images", "ls")} <= set(verbs)
    for verb in verbs:
        r = invoke(*verb, "--help")
        assert r.code == 0 and "Usage: gymctl " + " ".join(verb) in r.out, (verb, r.err)


def test_the_closed_sets_match_the_library():
    from gymctl.cli import options
    from gymctl.compose.model import TOPOLOGIES
    from gymctl.runtime.separated import RESTART_POLICIES

    assert get_args(options.ComposeTopology) == TOPOLOGIES
    assert get_args(options.RestartPolicy) == RESTART_POLICIES
    from gymctl.api import TOPOLOGIES as RUN_TOPOLOGIES

    assert get_args(options.RunTopology) == RUN_TOPOLOGIES  # what gymctl.api.Deployment.start runs


def test_no_verb_prints_the_help_alone():
    for args in ([], ["images"]):
        r = invoke(*args)
        assert r.code == 2 and "Usage: gymctl" in r.out + r.err and "UsageError" not in r.err, (args, r.err)
