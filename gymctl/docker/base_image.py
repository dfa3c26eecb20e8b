"""The offline base image: Debian + Python from Debian's packages (mmdebstrap | docker import), no registry needed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from gymctl.docker.cli import engine_client
from gymctl.errors import DockerError, GymctlError

DEFAULT_BASE = "gymctl/base:bookworm"
SUITE = "bookworm"
# NeMo Gym servers' images: nemo-gym 0.7.0 needs Python 3.13, which Debian trixie has (same packages, same way).
NEMO_GYM_BASE = "gymctl/base:trixie"
NEMO_GYM_SUITE = "trixie"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Documentation and translations are dead weight in a server image.
SLIM = (
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--aptopt=APT::Install-Recommends \"false\"",
)


@dataclass
class BaseImageResult:
    tag: str
    seconds: float
    size_bytes: int
    built: bool  # False: it existed and --force was not given


def base_image_exists(tag: str = DEFAULT_BASE) -> bool:
    from docker.errors import ImageNotFound

    try:
        engine_client().images.get(tag)
        return True
    except ImageNotFound:
        return False


def build_base_image(tag: str = DEFAULT_BASE, *, suite: str = SUITE, force: bool = False, packages: tuple[str, ...] = PACKAGES,
                     changes: tuple[str, ...] = ('CMD ["python3"]', "LABEL io.gymctl.image=base"), slim: tuple[str, ...] = ()) -> BaseImageResult:
    """`mmdebstrap --variant=minbase ... | docker import`: a Debian + Python base with no registry (other images: other `packages`)."""
    client = engine_client()
    t0 = time.monotonic()
    if not force and base_image_exists(tag):
        img = client.images.get(tag)
        return BaseImageResult(tag, 0.0, int(img.attrs.get("Size", 0)), built=False)
    if shutil.which("mmdebstrap") is None:
        raise GymctlError(
            "mmdebstrap is not installed; it builds the base image without a registry: apt-get install mmdebstrap "
            "(or, where you can pull, build with --base-image python:3.11-slim)"
        )
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}", *SLIM, *slim, suite, "-"]
    imp = ["docker", "import", *(a for change in changes for a in ("--change", change)), "-", tag]
    # mmdebstrap's progress goes to a file, not a pipe: a pipe nobody reads until the import ends fills up
    # (64 KiB) and stalls mmdebstrap forever.
    with tempfile.TemporaryFile() as err_file:
        strap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file)
        assert strap.stdout is not None
        importer = subprocess.run(imp, stdin=strap.stdout, capture_output=True)
        strap.stdout.close()
        strap.wait()
        err_file.seek(0)
        strap_err = err_file.read().decode(errors="replace")
    if strap.returncode != 0:
        tail = "\n".join(strap_err.strip().splitlines()[-15:])
        raise DockerError(f"mmdebstrap failed (exit {strap.returncode}); is Debian's archive reachable?\n{tail}",
                          argv=argv, returncode=strap.returncode, stderr=strap_err)
    if importer.returncode != 0:
        err = importer.stderr.decode(errors="replace").strip()
        raise DockerError(f"docker import failed (exit {importer.returncode}): {err}", argv=imp, returncode=importer.returncode, stderr=err)
    img = client.images.get(tag)
    return BaseImageResult(tag, time.monotonic() - t0, int(img.attrs.get("Size", 0)), built=True)
