"""Options the verbs share, declared once: --config, --set, `+key=value`, the closed sets (--topology, --restart, --log-level), --project, --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gymctl.config.model import GymConfig, load_config

# Closed sets. Each equals its library twin (tests/unit/test_cli_options.py checks): compose topologies =
# gymctl.compose.model.TOPOLOGIES, restart policies = gymctl.runtime.separated.RESTART_POLICIES.
ComposeTopology = Literal["all-in-one", "separated", "multi-host", "swarm"]
RunTopology = Literal["all-in-one", "separated", "ray"]
RestartPolicy = Literal["no", "on-failure"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]  # what uvicorn accepts

UP_ONLY = "Accepted so `gymctl up`'s command line works here unchanged; not used by this verb."

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", "-c", help="Config YAML (repeatable; later files override earlier ones). Resolved against the working directory, "
                 "then GYMCTL_SERVERS_DIR, then the servers shipped with gymctl."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set policy_base_url=http://127.0.0.1:8000/v1 (repeatable)."),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="OVERRIDES", help="NeMo Gym style overrides: \"+config_paths=\\[a.yaml,b.yaml]\" +policy_model_name=NAME ...", show_default=False),
]
ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="Compose project (stack) name; default: GYMCTL_PROJECT, else gymctl.")]
TopologyOpt = Annotated[
    ComposeTopology,
    typer.Option("--topology", "-t", help=(
        "all-in-one: one container; separated: the head plus one container per instance; multi-host: one file per host (gymctl.nodes); "
        "swarm: a stack on the context's swarm.")),
]
RunTopologyOpt = Annotated[
    RunTopology,
    typer.Option("--topology", "-t", help="all-in-one: every server in this process; separated: one process per instance; "
                 "ray: one Ray actor per instance (gymctl[ray]; joins ray_head_node_address, else starts a local cluster)."),
]
RestartOpt = Annotated[RestartPolicy, typer.Option("--restart", help="separated: restart policy for crashed instances.")]


def _known_to_logging(level: str) -> str:
    """uvicorn's `trace` is below DEBUG; name it for the logging module too (as uvicorn does, level 5)."""
    if level == "trace":
        import logging

        logging.addLevelName(5, "TRACE")
    return level


_LOG_LEVEL_HELP = "Server log level (uvicorn's levels, any case)."
LogLevelOpt = Annotated[LogLevel, typer.Option("--log-level", case_sensitive=False, callback=_known_to_logging, help=_LOG_LEVEL_HELP)]
ServeLogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option("--log-level", case_sensitive=False, callback=_known_to_logging, show_default=False,
                 help=_LOG_LEVEL_HELP + " Default: GYMCTL_LOG_LEVEL, else warning."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (messages stay on stderr).")]


def _select_context(ctx: typer.Context, context: str | None) -> str | None:
    """--context NAME: this command's Docker calls go to that context's engine (restored when the command ends)."""
    if context:
        from gymctl.docker.contexts import restore_env, select_context

        saved = select_context(context)
        ctx.call_on_close(lambda: restore_env(saved))
    return context


ContextOpt = Annotated[str | None, typer.Option(
    "--context", show_default=False, callback=_select_context,
    help="Docker context to act on (docker context ls; the lab's: gymctl-lab, gymctl-lab-node<i>). Default: the current one.")]

# The same options on a verb that does not need them (down, ps, ...): accepted, ignored, and said so.
IgnoredConfigOpt = Annotated[list[str] | None, typer.Option("--config", "-c", help=f"{UP_ONLY} (the stack is found by --project)")]
IgnoredSetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help=UP_ONLY)]
IgnoredOverridesArg = Annotated[list[str] | None, typer.Argument(metavar="OVERRIDES", help=f"`+key=value` overrides. {UP_ONLY}", show_default=False)]
IgnoredTopologyOpt = Annotated[ComposeTopology | None, typer.Option(
    "--topology", "-t", help="swarm: act on the swarm stack of --project (on the --context swarm); the others are accepted and ignored.",
    show_default=False)]
IgnoredProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help=f"{UP_ONLY} (pass --head or a config to find the head)")]


def print_json(value: Any) -> None:
    """A verb's --json result on stdout (dataclasses and paths as plain JSON)."""
    from dataclasses import asdict, is_dataclass

    def plain(o: Any) -> Any:
        if is_dataclass(o) and not isinstance(o, type):
            return asdict(o)
        return str(o)

    print(json.dumps(value, indent=2, default=plain))


def split_instance(instance: str | None, overrides: list[str] | None) -> tuple[str | None, list[str]]:
    """INSTANCE and the `+key=value` overrides of `logs`/`restart`: an override given first is not the instance."""
    args = [a for a in (instance, *(overrides or [])) if a is not None]
    names = [a for a in args if "=" not in a]
    rest = [a for a in args if "=" in a]
    if len(names) > 1:
        from gymctl.errors import UsageError

        raise UsageError(f"one instance at a time: got {', '.join(map(repr, names))}")
    return (names[0] if names else None), rest


def load_from_cli(config: list[str] | None, sets: list[str] | None, overrides: list[str] | None) -> GymConfig:
    """The validated config named by a verb's --config / --set / +overrides."""
    args = [*(overrides or []), *(sets or [])]
    return load_config(list(config or []), args, cwd=Path.cwd())


def head_from_overrides(args: list[str]) -> str | None:
    """The head URL named by `+head_server.host=` / `+head_server.port=` overrides (NeMo Gym's way), or None."""
    from gymctl.config.model import DEFAULT_HEAD_HOST, DEFAULT_HEAD_PORT
    from gymctl.config.overrides import parse_overrides

    parsed = dict(parse_overrides(args).settings)
    if "head_server.host" in parsed or "head_server.port" in parsed:
        return f"http://{parsed.get('head_server.host', DEFAULT_HEAD_HOST)}:{parsed.get('head_server.port', DEFAULT_HEAD_PORT)}"
    return None


def default_head_url() -> str:
    """GYMCTL_HEAD_URL, else the head on this machine's default port."""
    from gymctl.config.model import DEFAULT_HEAD_HOST, DEFAULT_HEAD_PORT
    from gymctl.server.settings import ServerSettings

    return ServerSettings.from_env().head_url or f"http://{DEFAULT_HEAD_HOST}:{DEFAULT_HEAD_PORT}"
