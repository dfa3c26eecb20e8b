"""Which Ray cluster gymctl uses: the one already initialized, the trainer's at ray_head_node_address, or a local one it starts and stops."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from gymctl.errors import RayUnreachableError, RayVersionMismatchError

NAMESPACE = "gymctl"
CONNECT_WAIT_S = 10.0
_MISMATCH = re.compile(r"Ray: (\S+)\s+Python: (\S+)\s+This process.*?Ray: (\S+)\s+Python: (\S+)", re.S)


@dataclass
class RayCluster:
    """The cluster this process is connected to; `stop()` disconnects, and stops the cluster and removes its files if gymctl started it."""

    address: str
    started_here: bool
    temp_dir: str | None = None
    connected_here: bool = True

    def stop(self) -> None:
        import ray

        if self.connected_here and ray.is_initialized():
            ray.shutdown()
        if self.temp_dir:  # the local cluster's sessions, sockets and ray_current_cluster: a leftover would make a later init join a dead cluster
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            if os.path.exists(self.temp_dir):  # a Ray agent still exiting wrote into it again
                time.sleep(0.5)
                shutil.rmtree(self.temp_dir, ignore_errors=True)


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a GCS address `host:port`; None for what only Ray resolves (`auto`, `ray://...`)."""
    text = address.strip()
    if text == "auto" or "://" in text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return (text, 6379)  # Ray's default GCS port
    return (host.strip("[]"), int(port))


def wait_reachable(address: str, wait_s: float = CONNECT_WAIT_S) -> None:
    """Until the GCS port accepts a connection; RayUnreachableError after `wait_s` (ray.init alone can hang much longer)."""
    target = parse_address(address)
    if target is None:
        return
    started = time.monotonic()
    last = ""
    while True:
        try:
            with socket.create_connection(target, timeout=2):
                return
        except OSError as e:
            last = e.strerror or type(e).__name__
        if time.monotonic() - started >= wait_s:
            raise RayUnreachableError(address, time.monotonic() - started, last)
        time.sleep(0.25)


def version_mismatch(address: str, error: BaseException) -> RayVersionMismatchError | None:
    """Ray's own "Version mismatch" error at connect, as gymctl's (None for any other error)."""
    m = _MISMATCH.search(str(error))
    if "Version mismatch" not in str(error) or m is None:
        return None
    cluster = f"Ray {m.group(1)} on Python {m.group(2)}"
    ours = f"Ray {m.group(3)} on Python {m.group(4)}"
    return RayVersionMismatchError(address, ours, cluster)


def connect(address: str | None, *, wait_s: float = CONNECT_WAIT_S, num_cpus: int | None = None, **init_args: Any) -> RayCluster:
    """Use the initialized Ray (a trainer's driver or actor), else join `address`, else start a local cluster.

    A local cluster keeps its files in a temp folder of its own (RAY_TMPDIR), removed by `stop()`.
    Raises RayUnreachableError (bounded wait) and RayVersionMismatchError.
    """
    import ray

    if ray.is_initialized():
        return RayCluster(ray.get_runtime_context().gcs_address, started_here=False, connected_here=False)
    if address:
        wait_reachable(address, wait_s)
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, **init_args)
        except (RuntimeError, ConnectionError) as e:
            mismatch = version_mismatch(address, e)
            if mismatch is not None:
                raise mismatch from None
            raise RayUnreachableError(address, wait_s, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        return RayCluster(ray.get_runtime_context().gcs_address, started_here=False)
    temp_dir = tempfile.mkdtemp(prefix="gymctl-ray-")
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir  # where Ray writes ray_current_cluster too, not /tmp/ray
    try:
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, num_cpus=num_cpus, **init_args)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
    return RayCluster(ray.get_runtime_context().gcs_address, started_here=True, temp_dir=temp_dir)


def node_resources() -> list[dict[str, float]]:
    """The resources of every live node (what placement can use)."""
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive")]


def check_placeable(who: str, resources: dict[str, float]) -> None:
    """RayPlacementError unless some live node offers all of `resources` (an actor nothing can host would stay pending forever)."""
    from gymctl.errors import RayPlacementError

    wanted = {k: v for k, v in resources.items() if v}
    if not wanted:
        return
    nodes = node_resources()
    if any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return
    offered = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n.items()) if not k.startswith(("node:", "memory", "object_store"))) for n in nodes)
    raise RayPlacementError(who, wanted, offered or "no live node")
