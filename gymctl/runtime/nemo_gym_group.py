"""The NeMo Gym servers of a deployment beside gymctl's: children of the separated supervisor, or of the all-in-one process."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

from gymctl.config.model import GymConfig
from gymctl.config.nemo_gym import check_nemo_gym, nemo_gym_settings
from gymctl.errors import StartupError, WaitTimeoutError
from gymctl.polling import poll_until
from gymctl.runtime.addresses import bind_and_advertise
from gymctl.runtime.children import OutputSink
from gymctl.runtime.nemo_gym import PEERS_ENV, Address, assign_ports, launch, peer_addresses, set_port
from gymctl.runtime.nemo_gym_child import NemoGymChild, Sender, SenderFactory, http_sender
from gymctl.runtime.nemo_gym_ray import SharedRay
from gymctl.runtime.processes import describe_exit
from gymctl.server.settings import ServerSettings

GRACE_S = 10.0


def _log_path(log_dir: str | None, name: str) -> Path | None:
    return Path(log_dir) / f"{name}.log" if log_dir else None


def nemo_gym_children(cfg: GymConfig, *, sink: OutputSink, log_dir: str | None, token: str | None) -> dict[str, NemoGymChild]:
    """One child per NeMo Gym instance for the separated supervisor ({} when there is none), registered with `token`
    (the auth or registration token). Every instance gets its port now (gymctl's too, in the config), since a NeMo
    Gym server learns its peers' addresses only at start."""
    nemo = check_nemo_gym(cfg)
    if not nemo:
        return {}
    run = ServerSettings.from_env()
    assign_ports(cfg, [n for n, s in cfg.instances.items() if not s.alias_of])
    addresses: dict[str, Address] = {n: (s.host or "127.0.0.1", int(s.port or 0)) for n, s in cfg.instances.items() if not s.alias_of}
    settings = nemo_gym_settings(cfg)
    ray = SharedRay.start_sync(cfg, nemo, settings)
    if ray is not None:
        atexit.register(ray.kill)  # and the holder leaves by itself when this process's end of its stdin closes
    out = {}
    for name in nemo:
        host, _ = addresses[name]
        spec = launch(cfg, name, settings, addresses=addresses, head=(cfg.head_host, cfg.head_port), advertise=host,
                      ray_address=ray.address if ray else None)
        out[name] = NemoGymChild(spec, sink=sink, sender=http_sender(cfg.head_url, token), start_timeout_s=settings.start_timeout_s,
                                 heartbeat_s=run.heartbeat_s, log_path=_log_path(log_dir, name), head_url=cfg.head_url)
    return out


async def start_beside(cfg: GymConfig, nemo: list[str], *, served: dict[str, tuple[str, int]], head_url: str, send: Sender,
                       settings: ServerSettings) -> NemoGymGroup:
    """Start the NeMo Gym servers `nemo` of an in-process deployment whose gymctl servers are `served` ({name: (host, port)}
    as bound); peers served elsewhere are found at their config's address, or where GYMCTL_NEMO_GYM_PEERS says
    (a container stack). `send` registers with the head. One NeMo Gym server alone (`gymctl serve NAME`) listens
    on GYMCTL_PORT when it is set (a container's 8000)."""
    if settings.port and not served and len(nemo) == 1:
        set_port(cfg, nemo[0], settings.port)
    assign_ports(cfg, nemo)
    addresses: dict[str, Address] = {n: (s.host or "127.0.0.1", int(s.port or 0)) for n, s in cfg.instances.items() if not s.alias_of}
    addresses.update(served)
    addresses.update({n: a for n, a in peer_addresses(os.environ.get(PEERS_ENV)).items() if n not in nemo})
    head = urlsplit(head_url)
    head_at = (head.hostname or cfg.head_host, head.port or cfg.head_port)
    advertise = {n: bind_and_advertise(cfg.instances[n].host, settings.bind_host, settings.advertise_host, head_host=head_at[0], head_port=head_at[1])[1]
                 for n in nemo}
    for name in nemo:
        addresses[name] = (advertise[name], int(cfg.instances[name].port or 0))
    return await NemoGymGroup.start(
        cfg, nemo, addresses=addresses, head=head_at, sender=lambda session: send,
        heartbeat_s=settings.heartbeat_s, advertise=advertise, bind_host=settings.bind_host,
        host_url=settings.host_url if len(nemo) == 1 else None,
    )


class NemoGymGroup:
    """NeMo Gym servers started by an in-process deployment (all-in-one, `gymctl serve NAME`): start, ready, stop."""

    def __init__(self, children: list[NemoGymChild], sink: OutputSink, ray: SharedRay | None = None) -> None:
        self.children = children
        self.sink = sink
        self.ray = ray
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    @classmethod
    async def start(cls, cfg: GymConfig, nemo: list[str], *, addresses: dict[str, Address], head: Address, sender: SenderFactory,
                    heartbeat_s: float, advertise: dict[str, str], bind_host: str | None = None,
                    host_url: str | None = None) -> NemoGymGroup:
        """Start every server of `nemo` (their ports in `addresses`), watched on this loop."""
        settings = nemo_gym_settings(cfg)
        sink = OutputSink(width=max(len(n) for n in nemo))
        ray = await SharedRay.start_for(cfg, nemo, settings)
        children = []
        try:
            for name in nemo:
                spec = launch(cfg, name, settings, addresses=addresses, head=head, advertise=advertise[name], bind_host=bind_host,
                              ray_address=ray.address if ray else None, host_url=host_url)
                children.append(NemoGymChild(spec, sink=sink, sender=sender, start_timeout_s=settings.start_timeout_s, heartbeat_s=heartbeat_s,
                                             head_url=f"http://{head[0]}:{head[1]}"))
        except BaseException:
            if ray:
                await ray.stop()
            raise
        group = cls(children, sink, ray)
        for child in children:
            child.spawn()
            await child.attach()
        group._watchers = [asyncio.create_task(group._watch(c)) for c in children]
        return group

    async def _watch(self, child: NemoGymChild) -> None:
        code = await child.wait()
        if not self._stopping:
            self.sink.note(f"{child.name} (pid {child.pid}) exited with {describe_exit(code)}")

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Until every server is registered; StartupError (with its log tail) for one that exits, never answers or is refused first."""
        timeout_s = timeout_s or max(c.start_timeout_s for c in self.children) + 5.0

        def all_registered() -> bool:
            for child in self.children:
                if child.refused:
                    raise StartupError(f"{child.name}: {child.refused}", instance=child.name)
                if not child.running and not child.registered.is_set():
                    reason = child.gave_up or child.last_error_line()
                    raise StartupError(
                        f"{child.name} exited with {describe_exit(child.returncode)} while starting" + (f": {reason}" if reason else ""),
                        instance=child.name, exit_code=child.returncode, log_tail="\n".join(child.tail),
                    )
            return all(c.registered.is_set() for c in self.children)

        def too_slow() -> StartupError:
            slow = [c.name for c in self.children if not c.registered.is_set()]
            return StartupError(f"NeMo Gym server(s) not registered after {timeout_s:.0f} s: {', '.join(slow)}", instance=slow[0],
                                log_tail="\n".join(line for c in self.children if c.name in slow for line in list(c.tail)[-10:]))

        await poll_until(all_registered, timeout_s, 0.05, what="NeMo Gym servers registered", on_timeout=too_slow)

    async def stop(self) -> None:
        """SIGTERM every server's process group, SIGKILL after the grace period; deregistered as each exits."""
        self._stopping = True
        for child in self.children:
            if child.running:
                child.signal_group(signal.SIGTERM)
        with contextlib.suppress(WaitTimeoutError):  # each watcher clears .running as its server exits
            await poll_until(lambda: not any(c.running for c in self.children), GRACE_S, 0.05, what="NeMo Gym servers stopped")
        for child in self.children:
            child.signal_group(signal.SIGKILL)
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for child in self.children:
            child.close()
        if self.ray:
            await self.ray.stop()
