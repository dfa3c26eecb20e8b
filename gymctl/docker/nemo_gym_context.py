"""The NeMo Gym part of the build context: CPython 3.13 wheels (nemo-gym, gymctl's server set, a server's own), fetched on the host.

NeMo Gym images are built on Debian trixie (Python 3.13, which nemo-gym needs) while gymctl may run on an older
Python, so the wheels are fetched for the image's interpreter (`pip download --only-binary=:all: --python-version
3.13 ...`) rather than built for this one; the image installs them with no index. A server's requirements.txt
line that names nemo-gym (NeMo Gym's own `-e nemo-gym[dev] @ ../../`: the checkout itself) is the shared
nemo-gym layer, NEMO_GYM_REQUIREMENT, without NeMo Gym's dev extra (its test and lint tools).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from gymctl.errors import DockerError

NEMO_GYM_REQUIREMENT = "nemo-gym==0.7.0"
PYTHON_VERSION = "3.13.5"  # Debian trixie's python3
RECIPE = "nemo_gym.Dockerfile"  # one server, FROM the runtime
RUNTIME_RECIPE = "nemo_gym_runtime.Dockerfile"  # what every NeMo Gym server image shares: nemo-gym, gymctl
# Every wheel tag trixie's CPython 3.13 (glibc 2.41) accepts, from the oldest manylinux on.
_PLATFORMS = [*(f"manylinux_2_{minor}_x86_64" for minor in range(17, 42)), "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64", "any"]
_TARGET = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
           "--abi", "cp313", "--abi", "abi3", "--abi", "none", *(a for p in _PLATFORMS for a in ("--platform", p))]
# nemo-gym's closure holds one sdist-only package (hydra-core and omegaconf need it); a wheel of it is built here first
# (pure Python: one wheel fits every Python), else the binary-only resolution falls back to hydra-core 0.11 silently.
PURE_SDISTS = ("antlr4-python3-runtime==4.9.3",)
_NAMES_NEMO_GYM = re.compile(r"^(-e\s+)?nemo[-_]gym\b", re.IGNORECASE)


def server_requirements(server_dir: Path) -> list[str]:
    """A NeMo Gym server's own requirements (requirements.txt, else pyproject.toml's [project] dependencies) beyond nemo-gym."""
    lines: list[str] = []
    req = server_dir / "requirements.txt"
    project = server_dir / "pyproject.toml"
    if req.is_file():
        lines = [ln.split(" #")[0].strip() for ln in req.read_text().splitlines()]
    elif project.is_file():
        lines = [str(d) for d in tomllib.loads(project.read_text()).get("project", {}).get("dependencies", [])]
    return [ln for ln in lines if ln and not ln.startswith("#") and not _NAMES_NEMO_GYM.match(ln)]


def _run_pip(argv: list[str]) -> None:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise DockerError(f"fetching CPython {PYTHON_VERSION} wheels for a NeMo Gym image failed (pip, exit {proc.returncode}); "
                          f"is the package index reachable?\n{tail}", argv=argv, returncode=proc.returncode, stderr=proc.stderr)


def download_wheels(dest: Path, requirements: list[str], *, stamp: str, constraints: list[str] | None = None) -> None:
    """dest/: the wheels of `requirements` for the image's Python and its requirements.txt (kept while `stamp` holds)."""
    marker = dest / ".stamp"
    if marker.is_file() and marker.read_text() == stamp:
        return
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run_pip([*pip, "wheel", "--quiet", "--no-deps", "--no-binary", ":all:", "--wheel-dir", str(dest), *PURE_SDISTS])
    argv = [*pip, "download", "--quiet", "--ignore-requires-python", *_TARGET, "--find-links", str(dest), "--dest", str(dest),
            "-r", str(dest / "requirements.txt")]
    if constraints:
        (dest / "constraints.txt").write_text("\n".join(constraints) + "\n")
        argv += ["-c", str(dest / "constraints.txt")]
    _run_pip(argv)
    marker.write_text(stamp)
