"""`gymctl collect` (= `ng_collect_rollouts`): rollouts from a JSONL of tasks through an agent, resumable, with progress."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gymctl.cli.options import (
    ConfigOpt,
    OverridesArg,
    SetOpt,
    default_head_url,
    head_from_overrides,
)
from gymctl.cli.status_cmd import StackProjectOpt
from gymctl.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from gymctl.config.model import GymConfig
    from gymctl.rollouts import CollectSpec
    from gymctl.rollouts.stats import RolloutStats, Summary
    from gymctl.runtime.inprocess import RunningDeployment

# NeMo Gym's `+key=value` collector arguments -> our option names.
NG_KEYS = {
    "agent_name": "agent", "input_jsonl_fpath": "input", "output_jsonl_fpath": "output", "num_repeats": "num_repeats",
    "limit": "limit", "num_samples_in_parallel": "concurrency", "timeout_s": "timeout",
}
NG_IGNORED = ("skip_venv_if_present", "uv_venv_dir", "dry_run", "disable_health_check")
PARAMS_PREFIX = "responses_create_params."


def _split_args(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Pull NeMo Gym's collector keys out of the +args; the rest are config overrides (or ignored settings)."""
    from gymctl.config.overrides import parse_value

    picked: dict[str, Any] = {}
    rest: list[str] = []
    for arg in overrides:
        key, eq, raw = arg.lstrip("+").partition("=")
        if eq and key in NG_KEYS:
            picked[NG_KEYS[key]] = parse_value(raw)
        elif eq and key.startswith(PARAMS_PREFIX):
            picked.setdefault("params", {})[key[len(PARAMS_PREFIX):]] = parse_value(raw)
        elif eq and key == "resume_from_cache":
            picked["overwrite"] = parse_value(raw) is False
        elif eq and key in NG_IGNORED:
            continue
        else:
            rest.append(arg)
    return picked, rest


def _int(name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise UsageError(f"{name}={value!r}: expected a whole number")


def _seconds(name: str, value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"{name}={value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise UsageError(f"{name}={value!r}: give a finite number of seconds (a rollout that never times out holds its slot for good)")
    if seconds <= 0:
        raise UsageError(f"{name}={value!r} must be more than 0 seconds")
    return seconds


def collect(
    overrides: OverridesArg = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="The agent instance to collect through (+agent_name=).")] = None,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Tasks: JSONL, one row with responses_create_params per line (+input_jsonl_fpath=).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Rollouts JSONL, appended to; a rerun resumes (+output_jsonl_fpath=).")] = None,
    num_repeats: Annotated[int | None, typer.Option("--num-repeats", "-n", help="Rollouts per task (+num_repeats=). Default 1.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-j", help="Rollouts in flight at once (+num_samples_in_parallel=). Default 64.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N tasks of the input (+limit=).")] = None,
    head: Annotated[str | None, typer.Option("--head", help=(
        "Head URL (default: the config's head_server, GYMCTL_HEAD_URL, the stack `gymctl up` started here, or http://127.0.0.1:11000)."))] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds one rollout may take before it is marked failed. Default 600.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Set a responses_create_params key in every task, e.g. --param temperature=0.6 (+responses_create_params.KEY=).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over: empty the output instead of resuming it (+resume_from_cache=false).")] = False,
    head_wait: Annotated[float, typer.Option("--head-wait", help="Seconds to wait for the head to answer before giving up.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")] = False,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve the run's figures on /metrics (Prometheus) at this port "
                                                     "while it runs (0: any free port).", min=0, max=65535)] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="--metrics-port: the address to listen on.")] = "127.0.0.1",
    project: StackProjectOpt = None,
    ng: Annotated[bool, typer.Option("--ng", hidden=True)] = False,
) -> None:
    """Collect rollouts: each task of --input, --num-repeats times, through the agent's /run; one output row per rollout.

    Rows are written as they finish. Rerun the same command after a crash or Ctrl-C: pairs already in the output are skipped and failed ones retried.

    With --config and no head running, the deployment is started in this process for the collection and stopped after it.

    \b
    Examples:
      gymctl collect --agent example_single_tool_call_simple_agent \\
          --input servers/resources_servers/example_single_tool_call/data/example.jsonl --output out.jsonl --num-repeats 4
      gymctl collect -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
          -c responses_api_models/scripted_model/configs/scripted_model.yaml --agent example_single_tool_call_simple_agent \\
          --input servers/resources_servers/example_single_tool_call/data/example.jsonl --output out.jsonl
      ng_collect_rollouts +agent_name=AGENT +input_jsonl_fpath=IN.jsonl +output_jsonl_fpath=OUT.jsonl +num_repeats=4
    """
    from gymctl.rollouts import CollectSpec

    picked, rest = _split_args(list(overrides or []))
    flag = (lambda ng_key, opt: f"+{ng_key}=") if ng else (lambda ng_key, opt: opt)
    agent = agent or picked.get("agent")
    input = input or picked.get("input")
    output = output or picked.get("output")
    missing = [flag(k, o) for k, o, v in (("agent_name", "--agent", agent), ("input_jsonl_fpath", "--input", input), ("output_jsonl_fpath", "--output", output)) if not v]
    if missing:
        example = ("ng_collect_rollouts +agent_name=AGENT +input_jsonl_fpath=IN.jsonl +output_jsonl_fpath=OUT.jsonl" if ng
                   else "gymctl collect --agent AGENT --input IN.jsonl --output OUT.jsonl")
        raise UsageError(f"missing {', '.join(missing)}; e.g. {example}")
    spec = CollectSpec(
        agent=str(agent), input_path=_input_path(str(input)), output_path=Path(str(output)),
        num_repeats=_int("num_repeats", num_repeats if num_repeats is not None else picked.get("num_repeats", 1)) or 0,
        concurrency=_int("concurrency", concurrency if concurrency is not None else picked.get("concurrency", 64)) or 0,
        limit=_int("limit", limit if limit is not None else picked.get("limit")),
        timeout_s=_seconds("--timeout", timeout) if timeout is not None else (_seconds("timeout", picked["timeout"]) if "timeout" in picked else 600.0),
    )
    params = dict(picked.get("params") or {})
    for p in param or []:
        key, eq, raw = p.partition("=")
        if not eq or not key:
            raise UsageError(f"--param {p!r}: write KEY=VALUE, e.g. --param temperature=0.6")
        from gymctl.config.overrides import parse_value

        params[key] = parse_value(raw)
    spec.params = params
    spec.overwrite = overwrite or bool(picked.get("overwrite"))
    spec.check()  # a wrong path is reported before anything starts

    cfg = None
    has_config = bool(config) or any(a.lstrip("+").startswith("config_paths=") for a in rest)
    if has_config:
        from gymctl.cli.options import load_from_cli

        cfg = load_from_cli(config, sets, rest)
    elif rest or sets:
        head = head or head_from_overrides([*rest, *(sets or [])])
        others = [a for a in [*rest, *(sets or [])] if "head_server." not in a]
        if others:
            print(f"note: ignoring {' '.join(others)} (config overrides apply only with --config / +config_paths)", file=sys.stderr)
    from gymctl.cli.stack_access import use_stack
    from gymctl.server.settings import ServerSettings

    env = ServerSettings.from_env()
    head_url = use_stack(head or (cfg.head_url if cfg else None) or env.head_url, project or env.project) or default_head_url()

    from gymctl.runtime.loop import run as run_loop

    metrics = (metrics_host, metrics_port) if metrics_port is not None else None
    summary, in_process = run_loop(_collect(spec, head_url, cfg, start_if_absent=cfg is not None and not head, head_wait_s=head_wait,
                                            metrics=metrics))
    from gymctl.cli.collect_view import print_summary

    print_summary(summary, as_json, in_process)
    if summary.interrupted:
        sys.exit(130)
    sys.exit(1 if summary.failed else 0)


async def _collect(spec: CollectSpec, head_url: str, cfg: GymConfig | None, *, start_if_absent: bool, head_wait_s: float = 10.0,
                   metrics: tuple[str, int] | None = None) -> tuple[Summary, bool]:
    from gymctl.cli.collect_view import ProgressView
    from gymctl.runtime.embedded import collect as collect_rollouts

    progress = ProgressView()
    on_progress: Callable[[RolloutStats], None] = progress.update
    exporter = None
    if metrics is not None:  # --metrics-port: the figures on /metrics while the run lasts (gymctl.rollouts.exporter)
        from gymctl.rollouts.exporter import CollectionFigures, MetricsExporter

        figures = CollectionFigures(spec.agent, spec.concurrency)
        exporter = MetricsExporter(figures, *metrics)
        print(f"metrics: {await exporter.start()}", file=sys.stderr, flush=True)

        def both(stats: RolloutStats) -> None:
            figures.update(stats)
            progress.update(stats)

        on_progress = both

    def on_started(dep: RunningDeployment, seconds: float) -> None:
        print(f"No head running: started the deployment in this process ({len(dep.servers)} instances, head {dep.head_url}, {seconds:.2f} s)",
              file=sys.stderr, flush=True)

    try:
        result = await collect_rollouts(
            spec, head_url, cfg, start_if_absent=start_if_absent, head_wait_s=head_wait_s, on_progress=on_progress,
            on_input_error=progress.input_error, on_started=on_started, display=progress,
            on_stopping=lambda: progress.note("Stopping: rows already written are kept; run the same command again to resume."),
        )
    finally:
        if exporter is not None:
            await exporter.stop()
    return result.summary, result.in_process


def _input_path(given: str) -> Path:
    """--input resolves as config paths do (working directory, then GYMCTL_SERVERS_DIR, then the shipped servers), so the
    seed's `resources_servers/.../data/example.jsonl` works from any directory with an installed gymctl."""
    from gymctl.config.paths import resolve_existing

    path = Path(given)
    if path.exists() or path.is_absolute():
        return path
    found, _ = resolve_existing(given)
    return found if found is not None and found.is_file() else path


def register(app: typer.Typer) -> None:
    app.command("collect")(collect)
