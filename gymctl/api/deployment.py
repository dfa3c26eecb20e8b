"""Deployment: start a config's servers from a training loop (no CLI), run rollouts of in-memory rows, check health, stop."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import aiohttp

from gymctl.api.rollouts import RowRunner, check_rows
from gymctl.errors import NotReadyError, UsageError
from gymctl.status import DeploymentStatus

Topology = Literal["all-in-one", "separated", "ray"]
TOPOLOGIES: tuple[str, ...] = ("all-in-one", "separated", "ray")


def override_args(overrides: Mapping[str, Any] | None) -> list[str]:
    """`{"policy_base_url": [a, b], "k.sub": 1}` as the `++key=value` overrides the config loader reads (values as JSON, which is YAML)."""
    args = []
    for key, value in (overrides or {}).items():
        text = value if isinstance(value, str) and ("${" in value or value == "") else json.dumps(value)
        args.append(f"++{key}={text}")
    return args


class _Running(Protocol):
    """What each topology's runtime gives the Deployment."""

    @property
    def head_url(self) -> str: ...

    def dead(self) -> list[str]: ...

    def local_agents(self) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


@dataclass
class _InProcess:
    dep: Any  # gymctl.runtime.inprocess.RunningDeployment

    @property
    def head_url(self) -> str:
        return str(self.dep.head_url)

    def dead(self) -> list[str]:
        tasks = [*self.dep.servers.values(), *([self.dep.head] if self.dep.head else [])]
        return sorted({s.name for s in tasks if s.task is not None and s.task.done()})

    def local_agents(self) -> dict[str, Any]:
        """The ASGI apps of this process's instances (the all-in-one client's in-process routes)."""
        return dict(self.dep.client.local) if self.dep.client is not None else {}

    async def stop(self) -> None:
        from gymctl.runtime.inprocess import stop

        await stop(self.dep)


@dataclass
class Deployment:
    """A running deployment of one config, owned by this process; `await stop()` leaves nothing running.

        dep = await Deployment.start(["resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
                                      "responses_api_models/vllm_model/configs/vllm_model.yaml"],
                                     {"policy_base_url": ["http://10.0.0.5:8000/v1"], "policy_model_name": "m", "policy_api_key": "x"})
        async for index, result in dep.run_rollouts(rows):
            ...  # result["reward"], result["response"]["output"][i]["generation_token_ids"]
        await dep.stop()
    """

    topology: str
    config: Any  # gymctl.config.model.GymConfig
    runtime: _Running
    token: str | None = None
    concurrency: int = 256
    timeout_s: float | None = 600.0
    in_process_calls: bool = True  # all-in-one: rows reach agents of this process through their app, not a socket
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _agents: dict[str, str] = field(default_factory=dict, repr=False)
    _stopped: bool = False

    # -- start ---------------------------------------------------------------------------------------
    @classmethod
    async def start(
        cls, config_paths: Sequence[str | Path], overrides: Mapping[str, Any] | None = None, *, topology: Topology = "all-in-one",
        head_host: str | None = None, head_port: int = 0, bind_host: str | None = None, advertise_host: str | None = None,
        cwd: str | Path | None = None, concurrency: int = 256, timeout_s: float | None = 600.0,
        log_level: str = "warning", log_dir: str | None = None, log_stream: IO[str] | None = None,
    ) -> Deployment:
        """Start every server of the config (files merged in order, then `overrides`) and return once the head is ready.

        all-in-one: the head and every server in this process, on this event loop. separated: one OS process per
        instance (restarted on failure). ray: each instance a Ray actor (gymctl.ray; needs `gymctl[ray]`).
        `head_port` 0 takes a free port; `bind_host` 0.0.0.0 with `advertise_host` a routable address makes the
        servers reachable from other hosts. Raises ConfigError, StartupError, NotReadyError, PortInUseError, RayError.
        """
        from gymctl.config.model import load_config
        from gymctl.server.settings import ServerSettings

        if topology not in TOPOLOGIES:
            raise UsageError(f"topology {topology!r} is not known; choose one of: {', '.join(TOPOLOGIES)}")
        if concurrency < 1:
            raise UsageError(f"concurrency {concurrency}: run at least one rollout at a time")
        base = Path(cwd) if cwd is not None else Path.cwd()
        paths = [str(p) for p in config_paths]
        args = override_args(overrides)
        if head_host:
            args.append(f"++head_server.host={head_host}")
        if topology == "separated" and not head_port:
            head_port = _free_port(bind_host or head_host or "127.0.0.1")
        if head_port:
            args.append(f"++head_server.port={head_port}")
        cfg = load_config(paths, args, cwd=base)
        cfg.head_port = head_port  # 0: the in-process head binds a free port (the config reads 0 as "the default, 11000")
        # GYMCTL_PORT / GYMCTL_HEAD_URL / GYMCTL_HOST_URL describe ONE server; a shell that exported them must not pin them all.
        settings = ServerSettings.from_env(log_level=log_level).model_copy(update={
            "head_url": None, "port": None, "host_url": None,
            "bind_host": bind_host or None, "advertise_host": advertise_host or None,
        })
        runtime: _Running
        if topology == "all-in-one":
            runtime = await _start_in_process(cfg, settings)
        elif topology == "separated":
            from gymctl.runtime.background import start_separated

            runtime = await start_separated(cfg, (paths, None, args), token=settings.auth_token, log_dir=log_dir,
                                            log_level=log_level, stream=log_stream)
        else:
            from gymctl.ray.topology import start_ray

            runtime = await start_ray(cfg, (paths, args, str(base)), settings)
        return cls(topology, cfg, runtime, token=settings.auth_token or None, concurrency=concurrency, timeout_s=timeout_s)

    @property
    def head_url(self) -> str:
        """The head's URL (its /server_instances, /health; what `gymctl status --head` and NeMo Gym's clients take)."""
        return self.runtime.head_url

    # -- rollouts ------------------------------------------------------------------------------------
    async def run_rollouts(self, rows: Iterable[Mapping[str, Any]], *, agent: str | None = None,
                           concurrency: int | None = None) -> AsyncGenerator[tuple[int, dict[str, Any]], None]:
        """(row position, the agent's reply) for every row, each as it finishes (not in input order).

        A row names its agent (`agent_ref.name`), else `agent` does. The reply is the agent's /run reply (the
        verify reply: `reward`, `response` whose output items carry prompt/generation token ids and logprobs where
        the model server returns them), plus `_ng_task_index`, `_ng_rollout_index` and `agent_ref`. Raises
        InputError for a bad row before any rollout starts, UnknownServerError for an agent that is not deployed,
        ServerError for a rollout that failed (the others are cancelled).
        """
        checked = check_rows(rows, agent)
        runner = await self._runner({a for _, a in checked}, concurrency)
        async for item in runner.stream(checked):
            yield item

    async def collect(self, rows: Iterable[Mapping[str, Any]], *, agent: str | None = None, concurrency: int | None = None) -> list[dict[str, Any]]:
        """Every row's reply, in input order."""
        out: dict[int, dict[str, Any]] = {}
        async for index, result in self.run_rollouts(rows, agent=agent, concurrency=concurrency):
            out[index] = result
        return [out[i] for i in range(len(out))]

    async def _runner(self, agents: set[str], concurrency: int | None) -> RowRunner:
        from gymctl.rollouts.agents import resolve_agent
        from gymctl.server.auth import auth_headers
        from gymctl.server.client import new_session

        self._check_running()
        if self._session is None:
            self._session = new_session()
        for name in sorted(agents - set(self._agents)):
            self._agents[name] = await resolve_agent(self.head_url, name, session=self._session, token=self.token)
        local = self.runtime.local_agents() if self.in_process_calls else {}
        return RowRunner(self._session, self._agents, headers=auth_headers(self.token), concurrency=concurrency or self.concurrency,
                         timeout_s=self.timeout_s, local={a: local[a] for a in agents if a in local})

    # -- health and stop -----------------------------------------------------------------------------
    async def health(self) -> DeploymentStatus:
        """What `gymctl status` shows: the head's readiness and each instance's registration and /health."""
        from gymctl.status import fetch_status

        self._check_running()
        return await fetch_status(self.head_url, token=self.token)

    async def check_health(self) -> DeploymentStatus:
        """health(), raising NotReadyError that names every process that died or instance that is not healthy."""
        dead = self.runtime.dead()
        status = await self.health()
        bad = [f"{i.instance} ({i.registered}, /health {i.health})" for i in status.instances if not i.ok]
        if dead or bad or not status.head_ready:
            parts = ([f"stopped: {', '.join(dead)}"] if dead else []) + ([f"not healthy: {', '.join(bad)}"] if bad else [])
            if status.waiting_for:
                parts.append(f"not registered: {', '.join(status.waiting_for)}")
            raise NotReadyError(f"deployment at {self.head_url} is not healthy; " + "; ".join(parts or ["the head is not ready"]),
                                service="head", status="unhealthy")
        return status

    async def stop(self) -> None:
        """Stop every server (draining in-flight requests) and close connections; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._session is not None:
                await self._session.close()
        finally:
            await self.runtime.stop()

    def _check_running(self) -> None:
        if self._stopped:
            raise UsageError(f"the deployment at {self.head_url} was stopped; start a new one (Deployment.start)")

    async def __aenter__(self) -> Deployment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _start_in_process(cfg: Any, settings: Any) -> _InProcess:
    from gymctl.runtime.inprocess import start, stop, wait_ready

    dep = await start(cfg, settings=settings)
    try:
        await wait_ready(dep)
    except BaseException:
        await stop(dep)
        raise
    return _InProcess(dep)


def _free_port(host: str) -> int:
    from gymctl.server.serving import bind_socket

    sock = bind_socket(host, 0, "head_server.port")
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()
