"""The image build context: the host-built wheelhouse, gymctl's source, one dir per image unit."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

from gymctl.compose.images import ImageUnit
from gymctl.config.paths import PACKAGE_ROOT, REPO_ROOT, is_checkout, shipped_dir
from gymctl.errors import DockerError

DOCKERFILE = shipped_dir("images") / "Dockerfile"
# The server set, declared once: what a server image installs and nothing more (the server kit, the head and
# `gymctl serve`'s command line). pyproject.toml's dependencies hold these plus the host-only CLI packages
# (rich beyond typer's, jinja2, python-on-whales, docker, ...); tests/unit/test_imports.py keeps the two in step.
SERVER_REQUIREMENTS = (
    "fastapi>=0.110",
    "uvicorn[standard]>=0.29",
    "aiohttp>=3.9",
    "yarl>=1.9",
    "pydantic>=2.6",
    "pydantic-settings>=2.2",
    "omegaconf>=2.3",
    "PyYAML>=6",
    "orjson>=3.9",
    "typer>=0.12",
    "prometheus-client>=0.20",
)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "venv", "tests", ".pytest_cache", "*.egg-info")
# Container tooling runs on the host, never in a server image (the CLI skips verbs whose module is absent):
# leaving it out keeps images smaller and unchanged when only the tooling changes. `_bundled` is the wheel's
# copy of servers/ and templates: an image gets only its own servers.
HOST_ONLY = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "compose", "docker", "checks", "_bundled",
    *(f"{verb}_cmd.py" for verb in ("build", "images", "render", "up", "down", "ps", "logs", "restart", "push", "cluster", "check")),
)


def default_context_dir() -> Path:
    """images/.context/ in a checkout; installed from a wheel, a folder in the user's cache (site-packages stays clean)."""
    if is_checkout():
        return REPO_ROOT / "images" / ".context"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gymctl" / "build-context"


def server_requirements() -> list[str]:
    """What a server image installs: the server set, sorted (the wheelhouse's requirements.txt)."""
    return sorted(SERVER_REQUIREMENTS)


def host_constraints(requirements: list[str]) -> list[str]:
    """Pin the requirements' dependency closure to the versions installed here: images run what the host's tests ran.

    Only the closure counts, so installing unrelated packages on the host does not rebuild the wheelhouse.
    """
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
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
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


def _sync(src: Path, dst: Path, ignore: Callable[[str, list[str]], set[str]] = IGNORE) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=ignore)


class BuildContext:
    """Prepares the build context once per `gymctl build` and answers each unit's source hash."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_context_dir()

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

    def prepare_nemo_gym(self) -> str:
        """nemo-gym/: the Python 3.13 wheels of nemo-gym and of gymctl's server set (gymctl.docker.nemo_gym_context), the recipe."""
        from gymctl.docker import nemo_gym_context as ng

        nemo = ng.NEMO_GYM_REQUIREMENT
        ng.download_wheels(self.root / "nemo-gym" / "wheels", [nemo], stamp=_digest(nemo, ng.PYTHON_VERSION, *ng.PURE_SDISTS))
        reqs = server_requirements()
        pins = host_constraints(reqs)
        ng.download_wheels(self.root / "nemo-gym" / "gymctl-wheels", reqs, stamp=_digest(*reqs, "--", *pins, ng.PYTHON_VERSION), constraints=pins)
        recipes = [shipped_dir("images") / name for name in (ng.RUNTIME_RECIPE, ng.RECIPE)]
        for recipe in recipes:
            shutil.copyfile(recipe, self.root / recipe.name)
        return _digest(nemo, *reqs, *pins, recipes[0].read_text())  # the runtime's inputs (gymctl and the server recipe come per server)

    def prepare_unit(self, unit: ImageUnit) -> str:
        """units/<SERVER_DIR>/{servers,reqs}: the unit's server code and its own requirements' wheels."""
        base = self.root / "units" / unit.name
        if base.exists():
            shutil.rmtree(base)
        servers = base / "servers"
        servers.mkdir(parents=True)
        (servers / ".gymctl-unit").write_text(unit.name + "\n")
        lines: list[str] = []
        for src, rel in zip(unit.server_dirs, unit.rel_dirs, strict=True):
            _sync(src, servers / rel)
            req = src / "requirements.txt"
            if unit.runtime == "nemo_gym":
                from gymctl.docker.nemo_gym_context import server_requirements as nemo_gym_requirements

                lines += nemo_gym_requirements(src)
            elif req.is_file():
                lines += [ln.strip() for ln in req.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
        reqs = base / "reqs"
        reqs.mkdir()
        lines = list(dict.fromkeys(lines))
        (reqs / "requirements.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        if lines and unit.runtime == "nemo_gym":
            from gymctl.docker.nemo_gym_context import download_wheels

            download_wheels(reqs, lines, stamp="")  # fetched for the image's Python 3.13
        elif lines:
            _pip_wheel(reqs, lines, host_constraints(lines))
        return tree_digest(base)

    def select(self, unit: ImageUnit) -> None:
        """Send only this unit's dir to the engine (the classic builder tars the whole context otherwise)."""
        if unit.runtime == "nemo_gym_runtime":  # the shared NeMo Gym layer: its wheels and gymctl, no server
            (self.root / ".dockerignore").write_text("units\nwheels\ngymctl\nbin\n")
            return
        # The other recipes' inputs stay out (a NeMo Gym server's build needs only its own unit: its runtime image holds the rest).
        other = "wheels\nnemo-gym\n" if unit.runtime == "nemo_gym" else "nemo-gym\n"
        (self.root / ".dockerignore").write_text(other + (f"units/*\n!units/{unit.name}\n" if "/" not in unit.name else
                                                 f"units/*\n!units/{unit.name.split('/')[0]}\nunits/{unit.name.split('/')[0]}/*\n!units/{unit.name}\n"))
