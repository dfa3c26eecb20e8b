"""A deployed swarm stack's tasks: the table per node, the readiness wait (tasks running and registered with the head), scale, logs."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gymctl.compose.model import LABEL_INSTANCE
from gymctl.docker.cli import run
from gymctl.docker.swarm import Swarm, SwarmPlacementError, stack_services
from gymctl.errors import DockerError, NotReadyError, StartupError, UsageError, did_you_mean

PENDING_FOR_S = 15.0  # a task pending this long because nothing fits: an error, not a wait (a rolling update frees room in seconds)
FAILS_BEFORE_ERROR = 3  # a service whose tasks failed this often in this deploy: an error with the last one's reason


@dataclass
class TaskRow:
    service: str  # the stack's service name, e.g. head (without the stack prefix)
    instance: str
    slot: int
    node: str
    state: str  # running | starting | pending | failed | ...
    desired: str
    error: str
    address: str  # on the stack network
    since: str
    task_id: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired == "running"


@dataclass
class ServiceRow:
    service: str
    instance: str
    replicas: int
    running: int
    registered: int | None = None  # with the head (None: not asked)
    update: str = ""  # a rolling update's state (updating, completed, rollback_completed, paused, ...; "" when none)
    update_started: str = ""  # when it began, UTC, 2026-12-02T15:19:37
    update_message: str = ""

    @property
    def rolling(self) -> bool:
        return self.update in ("updating", "rollback_started")


Progress = Callable[[list[TaskRow], str], None]


def no_progress(_rows: list[TaskRow], _phase: str) -> None:
    return None


def _short(project: str, name: str) -> str:
    return name[len(project) + 1:] if name.startswith(project + "_") else name


View = list[tuple[Any, list[dict[str, Any]]]]  # one look at a stack: each service with every task it has (current and past)


def stack_view(swarm: Swarm, project: str) -> View:
    """The stack's services, listed once, each with all its tasks."""
    return [(svc, list(svc.tasks())) for svc in stack_services(swarm.client, project)]


def _is_current(task: dict[str, Any]) -> bool:
    return task.get("DesiredState") == "running"  # what `docker service ps --filter desired-state=running` shows


def task_rows(swarm: Swarm, project: str, *, current: bool = True, view: View | None = None) -> list[TaskRow]:
    """Every task of the stack (current: those meant to run, plus ones that failed to), head first, by service and slot."""
    hostnames = {n.node_id: n.hostname for n in swarm.nodes}
    rows = []
    for svc, tasks in stack_view(swarm, project) if view is None else view:
        instance = (svc.attrs["Spec"].get("Labels") or {}).get(LABEL_INSTANCE, "")
        for t in tasks:
            if current and not _is_current(t):
                continue
            status = t.get("Status") or {}
            addrs = [a.split("/")[0] for n in t.get("NetworksAttachments") or [] for a in n.get("Addresses") or []
                     if not (n.get("Network", {}).get("Spec", {}).get("Ingress"))]
            rows.append(TaskRow(_short(project, svc.name), instance, int(t.get("Slot") or 0), hostnames.get(t.get("NodeID", ""), "-"),
                                str(status.get("State", "")), str(t.get("DesiredState", "")), str(status.get("Err") or ""),
                                addrs[0] if addrs else "", str(status.get("Timestamp", ""))[:19], str(t.get("ID", ""))))
    return sorted(rows, key=lambda r: (r.service != "head", r.service, r.slot))


def _head_get(url: str) -> tuple[int, Any]:
    headers = {}
    token = os.environ.get("GYMCTL_AUTH_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return 0, None


def registrations(head_url: str) -> dict[str, int] | None:
    """Healthy registrations per instance at the head (None: the head does not answer)."""
    code, body = _head_get(head_url + "/server_instances")
    if code != 200 or not isinstance(body, list):
        return None
    out: dict[str, int] = {}
    for i in body:
        if i.get("status", "healthy") == "healthy":
            name = str(i.get("process_name") or "")
            out[name] = out.get(name, 0) + 1
    return out


def service_rows(swarm: Swarm, project: str, head_url: str | None = None, *, view: View | None = None) -> list[ServiceRow]:
    regs = registrations(head_url) if head_url else None
    rows = []
    for svc, tasks in stack_view(swarm, project) if view is None else view:
        spec = svc.attrs["Spec"]
        instance = (spec.get("Labels") or {}).get(LABEL_INSTANCE, "")
        replicas = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        running = sum(1 for t in tasks if _is_current(t) and (t.get("Status") or {}).get("State") == "running")
        reg = None if regs is None or instance == "head" else regs.get(instance, 0)
        upd = svc.attrs.get("UpdateStatus") or {}
        rows.append(ServiceRow(_short(project, svc.name), instance, replicas, running, reg, str(upd.get("State", "")),
                               str(upd.get("StartedAt", ""))[:19], str(upd.get("Message", ""))))
    return sorted(rows, key=lambda r: (r.service != "head", r.service))


def _pending_error(rows: list[TaskRow], first_seen: dict[tuple[str, int, str], float], rolling: set[str] | None = None) -> SwarmPlacementError | None:
    """A task pending PENDING_FOR_S for lack of a fitting node; not one of a service being rolled (room frees as old tasks stop)."""
    now = time.monotonic()
    for r in rows:
        if r.service in (rolling or set()):
            continue
        key = (r.service, r.slot, r.task_id)
        if r.state == "pending" and ("no suitable node" in r.error or "insufficient resources" in r.error):
            first_seen.setdefault(key, now)
            if now - first_seen[key] >= PENDING_FOR_S:
                return SwarmPlacementError(f"{r.instance or r.service} task {r.slot} stays pending: Swarm says {r.error!r}; "
                                           "no node offers what it asks (its placement constraints, its GPUs); "
                                           "`gymctl ps --topology swarm` shows where the other tasks run", service=r.service)
        else:
            first_seen.pop(key, None)
    return None


def task_log(swarm: Swarm, project: str, service: str, lines: int = 20) -> str:
    try:
        proc = subprocess.run(["docker", "service", "logs", "--raw", "--tail", str(lines), f"{project}_{service}"],
                              capture_output=True, timeout=20, check=False)
        return (proc.stdout + proc.stderr).decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _failed_update(rows: list[ServiceRow], since: float | None) -> ServiceRow | None:
    if since is None:
        return None
    begun = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since - 1))
    return next((r for r in rows if r.update in ("rollback_completed", "rollback_paused", "paused") and r.update_started >= begun), None)


def _failed_ids(swarm: Swarm, project: str, view: View) -> set[str]:
    return {r.task_id for r in task_rows(swarm, project, current=False, view=view) if r.state in ("failed", "rejected")}


def _failures(swarm: Swarm, project: str, before: set[str], view: View) -> TaskRow | None:
    """A service whose tasks failed FAILS_BEFORE_ERROR times since the wait began (not counting `before`): its last failed task."""
    counts: dict[str, list[TaskRow]] = {}
    for r in task_rows(swarm, project, current=False, view=view):
        if r.state in ("failed", "rejected") and r.task_id not in before:
            counts.setdefault(r.service, []).append(r)
    for rows in counts.values():
        if len(rows) >= FAILS_BEFORE_ERROR:
            return rows[-1]
    return None


def wait_ready(swarm: Swarm, project: str, head_url: str, *, timeout_s: float, poll_s: float = 0.5,
               progress: Progress = no_progress, exact: set[str] | None = None, since: float | None = None) -> list[ServiceRow]:
    """Until every service runs all its replicas, each registered with the head, and the head is ready (/health 200).
    Instances in `exact` (just scaled down) wait until the removed replicas have drained and deregistered too.
    A rolling update (a changed config redeployed) is waited out; one begun after `since` (epoch) that Swarm rolled
    back or paused is an error with Swarm's reason.

    A task pending because no node fits is an error after PENDING_FOR_S; a service failing again and again is one
    with its task's reason and log tail; the deadline is one naming what is missing.
    """
    t0 = time.monotonic()
    view = stack_view(swarm, project)
    before = _failed_ids(swarm, project, view)
    first_seen: dict[tuple[str, int, str], float] = {}
    rows: list[ServiceRow] = []
    while True:
        tasks = task_rows(swarm, project, view=view)
        rows = service_rows(swarm, project, head_url, view=view)
        phase = "waiting for tasks" if any(r.running < r.replicas for r in rows) else "waiting for registrations"
        progress(tasks, phase)
        err = _pending_error(tasks, first_seen, {r.service for r in rows if r.rolling})
        if err is not None:
            raise err
        failed_update = _failed_update(rows, since)
        if failed_update is not None:
            raise StartupError(f"the rolling update of {failed_update.service} failed: {failed_update.update} "
                               f"({failed_update.update_message}); the service runs its previous version",
                               instance=failed_update.instance, log_tail=task_log(swarm, project, failed_update.service))
        up = all(r.running >= r.replicas and (r.service == "head" or (r.registered or 0) >= r.replicas) for r in rows)
        drained = all(r.running == r.replicas and r.registered == r.replicas for r in rows if r.instance in (exact or set()))
        done = bool(rows) and up and drained and not any(r.rolling for r in rows)
        if done and _head_get(head_url + "/health")[0] == 200:
            progress(tasks, "ready")
            return rows
        failed = _failures(swarm, project, before, view)
        if failed is not None:
            raise StartupError(f"{failed.instance or failed.service} keeps failing on {failed.node}: {failed.error or failed.state}",
                               instance=failed.instance, log_tail=task_log(swarm, project, failed.service))
        if time.monotonic() - t0 > timeout_s:
            missing = [f"{r.service} ({r.running}/{r.replicas} running, {r.registered if r.registered is not None else '?'} registered)"
                       for r in rows if r.running < r.replicas or (r.service != "head" and (r.registered or 0) < r.replicas)]
            raise NotReadyError(f"stack {project!r} not ready in {timeout_s:.0f} s: {', '.join(missing) or 'the head is not ready'} "
                                f"(gymctl ps --topology swarm -p {project}; gymctl status --head {head_url})", service=project)
        time.sleep(poll_s)
        view = stack_view(swarm, project)


def scale(swarm: Swarm, project: str, instance: str, replicas: int) -> str:
    """Set an instance's replicas live; the service's short name."""
    services = {(s.attrs["Spec"].get("Labels") or {}).get(LABEL_INSTANCE, ""): s for s in stack_services(swarm.client, project)}
    if not services:
        raise UsageError(f"stack {project!r} is not deployed on this swarm; `gymctl up --topology swarm` first")
    if instance not in services:
        names = sorted(n for n in services if n != "head")
        raise UsageError(f"stack {project!r} has no instance {instance!r}{did_you_mean(instance, names)} (instances: {', '.join(names)})")
    if instance == "head":
        raise UsageError("the head is the registry: it runs exactly one task")
    if replicas < 0:
        raise UsageError(f"{instance}={replicas}: replicas is a count (0 or more)")
    svc = services[instance]
    # The CLI's scale changes the replica count alone (the SDK's update re-sends the whole spec, which restarts every task).
    run(["docker", "service", "scale", "--detach", f"{svc.name}={replicas}"], timeout=60)
    return _short(project, svc.name)


def service_logs(project: str, services: list[str], *, follow: bool, tail: int | None) -> Iterator[str]:
    """`docker service logs` of each named service (all at once with follow: one after another otherwise)."""
    for service in services:
        argv = ["docker", "service", "logs", "--timestamps"]
        if follow:
            argv.append("--follow")
        if tail is not None:
            argv += ["--tail", str(tail)]
        argv.append(f"{project}_{service}")
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                yield line.decode(errors="replace")
            if proc.wait() != 0 and not follow:
                raise DockerError(f"`{' '.join(argv)}` failed (exit {proc.returncode})", argv=argv, returncode=proc.returncode)


def head_url_of(swarm: Swarm, project: str) -> str | None:
    """http://<the head task's node address>:<its published port>, or None when the stack has no running head."""
    for svc in stack_services(swarm.client, project):
        if (svc.attrs["Spec"].get("Labels") or {}).get(LABEL_INSTANCE) != "head":
            continue
        ports = (svc.attrs["Spec"].get("EndpointSpec") or {}).get("Ports") or []
        if not ports:
            return None
        addresses = {n.node_id: n.address for n in swarm.nodes}
        for t in svc.tasks(filters={"desired-state": "running"}):
            if t.get("NodeID") in addresses:
                return f"http://{addresses[t['NodeID']]}:{ports[0]['PublishedPort']}"
    return None
