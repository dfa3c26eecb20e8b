"""The build context under images/.context/: the host-built wheelhouse, gymctl's source, one dir per image unit."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from gymctl.compose.images import ImageUnit
from gymctl.config.paths import PACKAGE_ROOT, REPO_ROOT
from gymctl.errors import DockerError

DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"
DEFAULT_CONTEXT = REPO_ROOT / "images" / ".context"
# Beyond gymctl's declared server set: what `gymctl serve` itself imports (the command line, fast JSON).
IMAGE_EXTRAS = ("typer", "orjson")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "venv", "tests", ".pytest_cache", "*.egg-info")
# Container tooling runs on the host, never in a server image (the CLI skips verbs whose module is absent):
# leaving it out keeps images smaller and unchanged when only the tooling changes.
HOST_ONLY = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "compose", "docker",
    *(f"{verb}_cmd.py" for verb in ("build", "images", "render", "up", "down", "ps", "logs", "restart")),
)


def server_requirements() -> list[str]:
    """gymctl's server dependency set (no extras) plus what the serve command needs."""
    try:
        reqs = [r for r in (requires("gymctl") or []) if "extra ==" not in r]
    except PackageNotFoundError:
        reqs = ["fastapi", "uvicorn[standard]", "aiohttp", "pydantic", "pydantic-settings", "omegaconf", "PyYAML"]
    return sorted({*(r.split(";")[0].strip() for r in reqs), *IMAGE_EXTRAS})


def host_constraints(requirements: list[str]) -> list[str]:
    """Pin the requirements' dependency closure to the versions installed here: images run what the host's tests ran.

    Only the closure counts, so installing unrelated packages on the host does not rebuild the wheelhouse.
    """
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in pins or key == "gymctl":
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue  # pip resolves it freely
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for raw in dist.requires or []:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return sorted(pins.values())


def _pip_wheel(dest: Path, requirements: list[str], constraints: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (dest / "constraints.txt").write_text("\n".join(constraints) + "\n")
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(dest),
            "-r", str(dest / "requirements.txt"), "-c", str(dest / "constraints.txt")]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # wheels built from sdists come out byte-identical
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise DockerError(f"building the wheelhouse failed (pip wheel, exit {proc.returncode}):\n{tail}", argv=argv, returncode=proc.returncode, stderr=proc.stderr)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def tree_digest(root: Path) -> str:
    """A content hash of a directory (relative paths, modes and bytes), ignoring caches."""
    h = hashlib.sha256()
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode() + b"\0" + oct(p.stat().st_mode & 0o777).encode() + b"\0")
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _sync(src: Path, dst: Path, ignore=IGNORE) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=ignore)


class BuildContext:
    """Prepares images/.context/ once per `gymctl build` and answers each unit's source hash."""

    def __init__(self, root: Path = DEFAULT_CONTEXT) -> None:
        self.root = root

    def prepare_shared(self) -> str:
        """Wheelhouse (rebuilt only when requirements or pins change), gymctl's source, the launcher script."""
        self.root.mkdir(parents=True, exist_ok=True)
        reqs = server_requirements()
        pins = host_constraints(reqs)
        wheels = self.root / "wheels"
        stamp = _digest(*reqs, "--", *pins)
        if not (wheels / ".stamp").is_file() or (wheels / ".stamp").read_text() != stamp:
            if wheels.exists():
                shutil.rmtree(wheels)
            _pip_wheel(wheels, reqs, pins)
            (wheels / ".stamp").write_text(stamp)
        shutil.copyfile(DOCKERFILE, self.root / "Dockerfile")
        _sync(PACKAGE_ROOT, self.root / "gymctl", HOST_ONLY)
        (self.root / "bin").mkdir(exist_ok=True)
        launcher = self.root / "bin" / "gymctl"
        launcher.write_text('#!/bin/sh\nexec python3 -m gymctl "$@"\n')
        launcher.chmod(0o755)
        return _digest(stamp, tree_digest(self.root / "gymctl"), DOCKERFILE.read_text())

    def prepare_unit(self, unit: ImageUnit) -> str:
        """units/<SERVER_DIR>/{servers,reqs}: the unit's server code and its own requirements' wheels."""
        base = self.root / "units" / unit.name
        if base.exists():
            shutil.rmtree(base)
        servers = base / "servers"
        servers.mkdir(parents=True)
        (servers / ".gymctl-unit").write_text(unit.name + "\n")
        lines: list[str] = []
        for src, rel in zip(unit.server_dirs, unit.rel_dirs):
            _sync(src, servers / rel)
            req = src / "requirements.txt"
            if req.is_file():
                lines += [ln.strip() for ln in req.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
        reqs = base / "reqs"
        reqs.mkdir()
        (reqs / "requirements.txt").write_text("\n".join(dict.fromkeys(lines)) + ("\n" if lines else ""))
        if lines:
            _pip_wheel(reqs, list(dict.fromkeys(lines)), host_constraints(list(dict.fromkeys(lines))))
        return tree_digest(base)

    def select(self, unit: ImageUnit) -> None:
        """Send only this unit's dir to the engine (the classic builder tars the whole context otherwise)."""
        (self.root / ".dockerignore").write_text(f"units/*\n!units/{unit.name}\n" if "/" not in unit.name else
                                                 f"units/*\n!units/{unit.name.split('/')[0]}\nunits/{unit.name.split('/')[0]}/*\n!units/{unit.name}\n")
