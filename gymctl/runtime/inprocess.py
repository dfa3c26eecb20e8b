"""Run instances (and optionally the head) in this process: one event loop, one socket per server."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from gymctl.config.model import DEFAULT_HEAD_PORT, GymConfig
from gymctl.config.nemo_gym import check_nemo_gym
from gymctl.errors import ConfigError, StartupError, WaitTimeoutError
from gymctl.head.app import create_head_app, expected_instances
from gymctl.head.registration_token import guard_registration, read_registration_token
from gymctl.head.registry import Registry
from gymctl.hosts import url_host
from gymctl.polling import poll_until
from gymctl.runtime.addresses import bind_and_advertise, check_advertised
from gymctl.runtime.drain import drain, drain_limit_s
from gymctl.runtime.nemo_gym_group import start_beside
from gymctl.server.asgi_dispatch import asgi_request
from gymctl.server.client import ServerClient
from gymctl.server.direct import DirectApp
from gymctl.server.kit import ServerKit, add_health_routes, wrap_app
from gymctl.server.loader import load_module, validate_config
from gymctl.server.registration import Registrar, Sender, registration_record
from gymctl.server.serving import QuietServer, bind_socket, make_server
from gymctl.server.settings import ServerSettings

log = logging.getLogger("gymctl.runtime")


@dataclass
class RunningServer:
    name: str
    url: str
    port: int
    server: QuietServer
    task: asyncio.Task[None] | None = None


@dataclass
class RunningDeployment:
    """What is up in this process: the head (maybe), the servers, their URLs."""

    config: GymConfig
    head_url: str
    servers: dict[str, RunningServer] = field(default_factory=dict)
    head: RunningServer | None = None
    client: ServerClient | None = None
    registrar: Registrar | None = None
    registry: Registry | None = None
    started_at: float = field(default_factory=time.monotonic)
    nemo_gym: Any = None  # gymctl.runtime.nemo_gym_group.NemoGymGroup: NeMo Gym's own servers, child processes of this one
    drain_s: float = 0.0  # ServerSettings.drain_s: how long stop() keeps serving after deregistering


def _registration_sender(head_app: Any, head_url: str, client: ServerClient, token: str | None) -> Sender:
    """How the registrar reaches the head: in-process when it lives here, HTTP otherwise."""
    raw_auth = [(b"authorization", f"Bearer {token}".encode())] if token else []
    http_auth = {"Authorization": f"Bearer {token}"} if token else {}  # the auth token, or the registration token

    async def send_local(path: str, body: dict[str, Any]) -> int:
        status, _, _ = await asgi_request(head_app, "POST", path, orjson.dumps(body), [(b"content-type", b"application/json"), *raw_auth])
        return status

    async def send_http(path: str, body: dict[str, Any]) -> int:
        async with client.session.post(head_url + path, data=orjson.dumps(body), headers={"Content-Type": "application/json", **http_auth}) as r:
            await r.read()
            return r.status

    return send_local if head_app is not None else send_http


def _build_app(config: GymConfig, name: str, kit: ServerKit) -> Any:
    """Load an instance's module, validate its block against its `Config`, and build its app."""
    spec = config.instances[name]
    assert spec.dir_path is not None
    module = load_module(spec.dir_path, spec.entrypoint, spec.server_type, spec.impl)
    server_config = validate_config(module, config.block(name), source=spec.origin, key_path=spec.key_path)
    try:
        app = module.create_app(server_config, kit)
    except (ConfigError, StartupError):
        raise
    except Exception as e:
        raise StartupError(f"{name}: create_app failed: {type(e).__name__}: {e}", instance=name) from e
    add_health_routes(app, kit)
    return app


def addresses(config: GymConfig, served: list[str], settings: ServerSettings, head_url: str) -> dict[str, tuple[str, str]]:
    """(bind, advertise) per served instance; ConfigError for one that would advertise loopback to a head on another host."""
    head = urlsplit(head_url)
    head_host, head_port = head.hostname or config.head_host, head.port or config.head_port or DEFAULT_HEAD_PORT
    out = {}
    for name in served:
        spec = config.instances[name]
        bind, advertise = bind_and_advertise(spec.host, settings.bind_host, settings.advertise_host, head_host=head_host, head_port=head_port)
        check_advertised(name, spec.key_path, advertise, head_url, head_host)
        out[name] = (bind, advertise)
    return out


def _bind_all(
    config: GymConfig, served: list[str], settings: ServerSettings, with_head: bool, binds: dict[str, tuple[str, str]],
) -> tuple[Any, dict[str, Any]]:
    """Bind every socket first (port 0: the port the kernel gives); on any failure close what was bound."""
    sockets: dict[str, Any] = {}
    head_sock = None
    try:
        if with_head:
            head_sock = bind_socket(settings.bind_host or config.head_host, config.head_port, "head_server")
        for name in served:
            spec = config.instances[name]
            sockets[name] = bind_socket(binds[name][0], settings.port or spec.port, f"{spec.key_path}.port", reuse_port=settings.workers > 1)
    except Exception:
        for sock in [head_sock, *sockets.values()]:
            if sock is not None:
                sock.close()
        raise
    return head_sock, sockets


async def start(
    config: GymConfig,
    names: list[str] | None = None,
    *,
    with_head: bool = True,
    settings: ServerSettings | None = None,
    head_url: str | None = None,
) -> RunningDeployment:
    """Build, bind and start the head (if asked) and the named instances; register them.

    Apps are built before any port is bound, and a failure part-way stops whatever had started.
    A head port of 0 takes the port the kernel gives: `config.head_port` and `dep.head_url` then name
    it, and every server here registers there.
    """
    settings = settings or ServerSettings.from_env()
    names = list(config.instances) if names is None else names
    served = [n for n in names if not config.instances[n].alias_of]
    nemo = check_nemo_gym(config, served)  # NeMo Gym's own servers run as child processes beside these
    served = [n for n in served if n not in nemo]
    token = settings.auth_token
    registration = token or settings.registration_token  # with auth off, still needed to register (gymctl.head.registration_token)
    resolved = config.resolve(required=served)  # names any unset ${oc.env:VAR}
    explicit_head = head_url or settings.head_url
    head_url = (explicit_head or config.head_url).rstrip("/")

    local: dict[str, Any] = {}
    client = ServerClient(head_url, token=token, local=local, retries=3)
    dep = RunningDeployment(config=config, head_url=head_url, client=client, drain_s=settings.drain_s)
    sockets: dict[str, Any] = {}
    try:
        kits = {
            name: ServerKit(instance=name, server_type=config.instances[name].server_type, impl=config.instances[name].impl, client=client, global_config=resolved)
            for name in served
        }
        binds = addresses(config, served, settings, head_url)
        apps = {name: _build_app(config, name, kits[name]) for name in served}
        head_sock, sockets = _bind_all(config, served, settings, with_head, binds)
        if head_sock is not None:
            # Head port 0: the kernel chose; everything that names the head learns the real port now, before anyone registers.
            bound_url = _adopt_head_port(config, resolved, head_sock.getsockname()[1])
            if not explicit_head:
                head_url = client.head_url = dep.head_url = bound_url

        head_app = None
        if with_head:
            registry = Registry(expected=expected_instances(config), lease_s=settings.lease_s, drop_s=settings.drop_s)
            bound = f"http://{url_host(head_sock.getsockname()[0])}:{config.head_port}" if head_sock is not None else head_url
            guarded, registration = guard_registration(create_head_app(config, registry), token, registration, bound, config.head_port)
            head_app = wrap_app(guarded, token, head=True)
            dep.registry = registry
            server = make_server(head_app, log_level=settings.log_level)
            dep.head = RunningServer("head", head_url, config.head_port, server)
            dep.head.task = asyncio.create_task(server.serve(sockets=[head_sock]))

        # One served instance (its aliases ride on its URL): the published host URL is its own.
        host_url = settings.host_url if len(served) == 1 else None
        records = []
        for name in served:
            spec = config.instances[name]
            port = sockets[name].getsockname()[1]
            advertise = binds[name][1]
            url = f"http://{url_host(advertise)}:{port}"
            wrapped = wrap_app(apps[name], token)
            # In-process calls and the socket's: the served app's admission, limits and auth, then straight to the route.
            local[name] = direct = DirectApp(wrapped)
            server = make_server(direct, log_level=settings.log_level)
            rs = RunningServer(name, url, port, server)
            rs.task = asyncio.create_task(server.serve(sockets=[sockets.pop(name)]))
            dep.servers[name] = rs
            records.append(registration_record(
                instance=name, server_type=spec.server_type, impl=spec.impl, url=url, host=advertise, port=port,
                host_url=host_url, entrypoint=spec.entrypoint, dir_path=str(spec.dir_path), start_time=kits[name].start_time,
            ))
            if settings.workers > 1:  # every worker of the port sends this same record: one registration, kept while any lives
                records[-1]["workers"] = settings.workers

        # Aliases (environment_servers/legacy_agent) are their agent: same URL, no extra hop.
        for name in names:
            spec = config.instances[name]
            if spec.alias_of and spec.alias_of in dep.servers:
                target = dep.servers[spec.alias_of]
                local[name] = local[spec.alias_of]
                base = next(r for r in records if r["process_name"] == spec.alias_of)
                records.append({**base, "process_name": name, "config_path": name, "server_type": spec.server_type, "name": spec.impl, "alias_of": spec.alias_of})
                dep.servers[name] = RunningServer(name, target.url, target.port, target.server)

        await _wait_started(dep)
        if nemo:
            dep.nemo_gym = await start_beside(config, nemo, served={n: (binds[n][1], dep.servers[n].port) for n in served}, head_url=head_url,
                                              send=_registration_sender(head_app, head_url, client, registration or read_registration_token(head_url)),
                                              settings=settings)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        await stop(dep)
        raise
    if not with_head and not registration:
        registration = read_registration_token(head_url)  # `gymctl serve` by hand beside a local head
    dep.registrar = Registrar(_registration_sender(head_app, head_url, client, registration), records, interval_s=settings.heartbeat_s, head_url=head_url)
    dep.registrar.start()
    return dep


def _adopt_head_port(config: GymConfig, resolved: dict[str, Any], port: int) -> str:
    """The head's URL once its socket is bound (port 0 asks the kernel), written where servers read it."""
    if config.head_port != port:
        config.head_port = port
        head = resolved.get("head_server")
        if isinstance(head, dict):
            head["port"] = port
    return config.head_url.rstrip("/")


async def _wait_started(dep: RunningDeployment, timeout_s: float = 30.0) -> None:
    servers = [s for s in ([dep.head] if dep.head else []) + list(dep.servers.values())]

    def started() -> bool:
        for s in servers:
            if s.task and s.task.done() and not s.server.started:
                raise StartupError(f"{s.name} stopped while starting: {s.task.exception()!r}", instance=s.name)
        return all(s.server.started for s in servers)

    try:
        await poll_until(started, timeout_s, 0.005, what="servers started")
    except WaitTimeoutError:
        slow = [s.name for s in servers if not s.server.started]
        raise StartupError(f"servers not started after {timeout_s:.0f} s: {', '.join(slow)}") from None


async def stop(dep: RunningDeployment) -> None:
    """Deregister, keep serving for at least `drain_s` and while new requests still come (gymctl.runtime.drain), then
    finish in-flight requests, stop every server, close the client pool.

    The drain is for a replica leaving a pool others keep using (a swarm scale-down): callers pick from a listing
    they re-read every second, so one just deregistered still gets new calls for that long; closing at once resets
    the connections those calls are written on."""
    if dep.nemo_gym is not None:
        await dep.nemo_gym.stop()
    servers = {id(s.server): s for s in dep.servers.values() if s.task}  # aliases share their agent's server
    if dep.registrar:
        t0 = time.monotonic()
        deregistered = await dep.registrar.stop(deregister=True)  # a failure is logged there
        if dep.drain_s > 0:
            if deregistered:
                log.info("deregistered from the head in %.0f ms; serving on while callers still send requests (GYMCTL_DRAIN_S %.1f s, "
                         "at most %.1f s)", (time.monotonic() - t0) * 1000, dep.drain_s, drain_limit_s(dep.drain_s))
            waited = await drain(lambda: sum(s.server.server_state.total_requests for s in servers.values()), dep.drain_s)
            log.info("drained for %.1f s; stopping", waited)
    for s in servers.values():
        s.server.should_exit = True
    await asyncio.gather(*(s.task for s in servers.values() if s.task), return_exceptions=True)
    if dep.head:
        dep.head.server.should_exit = True
        if dep.head.task:
            await asyncio.gather(dep.head.task, return_exceptions=True)
    if dep.client:
        await dep.client.close()


async def wait_ready(dep: RunningDeployment, timeout_s: float = 30.0) -> None:
    """Until the registrar has registered everything: WaitTimeoutError after `timeout_s` (where it looked, the last
    error), StartupError at once when the head refuses (wrong token, an address another instance holds)."""
    if dep.nemo_gym is not None:
        await dep.nemo_gym.wait_ready()  # bounded by its own start timeout (gymctl.nemo_gym.start_timeout_s)
    reg = dep.registrar
    if reg is None:
        return
    waits = [asyncio.ensure_future(reg.registered.wait()), asyncio.ensure_future(reg.refused_event.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if reg.registered.is_set():
        return
    if reg.refused:
        raise StartupError(reg.refused)
    detail = f"last: {reg.last_error}; " if reg.last_error else ""
    raise WaitTimeoutError(
        f"registration with the head at {dep.head_url}", timeout_s,
        f"{detail}is it up? Start the head's host first (its config's head_server is this one's), or check head_server in this config",
    ) from None
