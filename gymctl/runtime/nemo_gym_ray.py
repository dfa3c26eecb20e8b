"""One shared local Ray cluster for the NeMo Gym servers that call ray.init at start (instead of one per server).

NeMo Gym 0.7.0 starts a Ray cluster in every server process that does not declare `ray_enabled = False`
(~7-12 s and ~0.7 GiB each here) unless `ray_head_node_address` names one. gymctl starts none when no server
needs Ray, and otherwise one, held by a small process on the first such server's interpreter (same Ray and
Python as the servers), passed to every server as `ray_head_node_address`, and stopped with the deployment.
A `ray_head_node_address` in the config is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time

from gymctl.config.model import GymConfig
from gymctl.config.nemo_gym import NemoGymSettings, uses_ray
from gymctl.errors import StartupError, WaitTimeoutError
from gymctl.polling import poll_until_sync

START_TIMEOUT_S = 90.0
_ADDRESS = re.compile(rb"^gymctl-ray-address (\S+)$", re.MULTILINE)
_HOLDER = (
    "import sys, ray\n"
    "ray.init(include_dashboard=False)\n"
    "print('gymctl-ray-address', ray.get_runtime_context().gcs_address, flush=True)\n"
    "sys.stdin.read()\n"  # until gymctl closes the pipe (or kills the group)
)


class _HolderExited(Exception):
    """The holder process ended before printing the cluster's address."""


class SharedRay:
    """A local Ray cluster held by one process (its own process group) for the deployment's lifetime."""

    def __init__(self, proc: subprocess.Popen[bytes], address: str) -> None:
        self.proc = proc
        self.address = address

    @classmethod
    def start_sync(cls, cfg: GymConfig, nemo: list[str], settings: NemoGymSettings) -> SharedRay | None:
        """Start the cluster if a server of `nemo` needs Ray and the config names none; None otherwise."""
        from gymctl.runtime.nemo_gym import interpreter

        needing = [n for n in nemo if uses_ray(cfg, n)]
        if not needing or cfg.tree.get("ray_head_node_address"):
            return None
        python = interpreter(cfg, needing[0], settings)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        env.pop("PYTHONPATH", None)
        proc = subprocess.Popen([str(python), "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        assert proc.stdout is not None
        out = bytearray()
        os.set_blocking(proc.stdout.fileno(), False)

        def address() -> str | None:
            out.extend(proc.stdout.read() or b"")  # type: ignore[union-attr]
            m = _ADDRESS.search(out)
            if m:
                return m.group(1).decode()
            if proc.poll() is not None:
                raise _HolderExited
            return None

        with contextlib.suppress(WaitTimeoutError, _HolderExited):
            return cls(proc, poll_until_sync(address, START_TIMEOUT_S, 0.1, what="the shared Ray cluster"))
        exited = proc.poll()
        cls(proc, "").kill()
        lines = bytes(out).decode(errors="replace").splitlines()
        what = f"exited with code {exited}: {lines[-1] if lines else 'no output'}" if exited is not None else f"did not start within {START_TIMEOUT_S:.0f} s"
        raise StartupError(f"the shared Ray cluster for {', '.join(needing)} (their classes do not declare ray_enabled = False) {what} "
                           f"(on {python}); set ray_head_node_address to a running cluster, or install ray in that venv",
                           instance=needing[0], log_tail="\n".join(lines[-15:]))

    @classmethod
    async def start_for(cls, cfg: GymConfig, nemo: list[str], settings: NemoGymSettings) -> SharedRay | None:
        return await asyncio.to_thread(cls.start_sync, cfg, nemo, settings)

    def kill(self) -> None:
        """SIGTERM the holder's group (Ray's own processes included), SIGKILL what is left after 3 s."""
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + wait_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.wait(5)

    async def stop(self) -> None:
        await asyncio.to_thread(self.kill)
