"""How many connections one process can hold: its open-files limit, split between requests in and calls out.

Every connection is a file descriptor. A server with N requests in flight holds N inbound connections and,
while those requests wait on their upstream (an LLM), up to N outbound ones, so one process can keep about
half its open-files limit in flight. Past the limit the process cannot accept (libuv, under uvloop, then
accepts and drops what is queued: clients see resets) nor connect. gymctl keeps each process inside it:

- outbound: every server's pooled session holds at most `upstream_connections` connections per upstream
  (host:port) and in all; calls beyond wait for a free connection (a real vLLM wants that bound too);
- inbound: a server with `max_concurrency` requests in flight answers the next ones 503 with Retry-After
  (gymctl.server.admission), and gymctl's clients wait and try again;
- by default both come from the limit (what is left after reserve_files(), half each), so the two together
  never pass it. GYMCTL_UPSTREAM_CONNECTIONS / GYMCTL_MAX_CONCURRENCY set them.
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass

RESERVE_FILES = 512  # at least: logs, pipes, the event loop, the head, and connections being answered 503


def reserve_files(open_files: int) -> int:
    """Files kept out of the budget: 512, or 1/20 of the limit up to 4,096 (measured: at 10,000 in flight on a
    20,000-file limit, up to ~480 sockets beyond the budget at once -- clients turned away reconnecting, on a
    loaded machine)."""
    return max(RESERVE_FILES, min(open_files // 20, 4096))
_UNLIMITED = 1_048_576  # what "unlimited" stands for (Linux's default nr_open)


def open_files_limit() -> int:
    """This process's soft RLIMIT_NOFILE (what it may open now)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_files_limit() -> int:
    """Lift the soft limit to the hard one (what every gymctl process does at start, NeMo Gym too); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _UNLIMITED
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return open_files_limit()


def hard_open_files_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED if hard == resource.RLIM_INFINITY else int(hard)


@dataclass(frozen=True, slots=True)
class Capacity:
    """One process's connection budget."""

    open_files: int  # the soft limit it was derived from
    max_concurrency: int  # requests in flight per served app before 503
    upstream_connections: int  # outbound connections per upstream and in all

    @property
    def in_flight(self) -> int:
        """Rollouts one process can hold when each waits on one upstream call."""
        return min(self.max_concurrency, self.upstream_connections)


def capacity(max_concurrency: int | None = None, upstream_connections: int | None = None, open_files: int | None = None) -> Capacity:
    """The budget: explicit values win; what is not given is derived from the open-files limit."""
    files = open_files if open_files is not None else open_files_limit()
    usable = max(32, files - reserve_files(files))
    upstream = upstream_connections or max(16, usable // 2)
    inbound = max_concurrency or max(16, usable - min(upstream, usable // 2))
    return Capacity(files, inbound, upstream)


def from_settings() -> Capacity:
    """The budget of this process from GYMCTL_MAX_CONCURRENCY / GYMCTL_UPSTREAM_CONNECTIONS and its limit."""
    from gymctl.server.settings import ServerSettings

    s = ServerSettings.from_env()
    return capacity(s.max_concurrency, s.upstream_connections)


EMBEDDED_CONNECTIONS = 3  # per rollout when the deployment runs in the collecting process: collector, server in, server out


def client_connections_fit(concurrency: int, what: str = "--concurrency", *, embedded: bool = False) -> None:
    """Refuse a client-side concurrency (one connection each; three with the deployment in this process) that
    cannot fit in this process's open files."""
    from gymctl.errors import UsageError

    files = raise_open_files_limit()  # the collection runs after the raise: judge by the limit it will have
    usable = files - reserve_files(files)
    per = EMBEDDED_CONNECTIONS if embedded else 1
    if concurrency * per > usable:
        hard = hard_open_files_limit()
        where = (f"with the deployment in this process each rollout holds {per} connections (collector, server in, server out), so at most "
                 f"{usable // per:,} fit" if embedded else f"one process can hold at most {usable:,} connections here")
        fix = ("start the deployment on its own (`gymctl run ...` or `up`) and collect with --head, lower " if embedded else "lower ")
        raise UsageError(
            f"{what} {concurrency}: {where} (open-files limit {files:,}, hard limit {hard:,}, {files - usable:,} kept "
            f"for other files); {fix}{what} to {usable // per:,} or less, or raise the hard limit (`ulimit -Hn`, "
            "a container's --ulimit nofile=N:N)"
        )
