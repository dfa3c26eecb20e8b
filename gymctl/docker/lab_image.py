"""The lab's two offline images, node (dockerd) and registry (Debian's docker-registry): mmdebstrap | docker import, cached by content label."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from gymctl.docker.base_image import SLIM, SUITE
from gymctl.docker.cli import engine_client
from gymctl.errors import DockerError, GymctlError

LABEL_IMAGE = "io.gymctl.image"
LABEL_CONTENT = "io.gymctl.content"
NODE_IMAGE = "gymctl/lab-node:bookworm"
REGISTRY_IMAGE = "gymctl/lab-registry:bookworm"


@dataclass(frozen=True)
class LabImageSpec:
    """What one lab image holds: Debian packages and the `docker import --change` lines."""

    tag: str
    kind: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]

    def content(self, suite: str = SUITE) -> str:
        """The content hash the image carries: rebuilt only when this spec changes."""
        return hashlib.sha256("\0".join((suite, *self.packages, "--", *self.changes, *SLIM)).encode()).hexdigest()[:16]


NODE_SPEC = LabImageSpec(
    NODE_IMAGE, "lab-node",
    ("docker.io", "iptables", "iproute2", "procps", "ca-certificates"),
    ('CMD ["dockerd", "--storage-driver=vfs"]',),
)
REGISTRY_SPEC = LabImageSpec(
    REGISTRY_IMAGE, "lab-registry",
    ("docker-registry", "ca-certificates"),
    ('CMD ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]', "EXPOSE 5000"),
)


@dataclass
class LabImageResult:
    tag: str
    seconds: float
    built: bool  # False: an image with the same content label was there


def _current(client: Any, spec: LabImageSpec, suite: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        labels = client.images.get(spec.tag).labels or {}
    except ImageNotFound:
        return False
    return labels.get(LABEL_CONTENT) == spec.content(suite)


def ensure_lab_image(spec: LabImageSpec, *, suite: str = SUITE, force: bool = False) -> LabImageResult:
    """The image of `spec`, bootstrapped from Debian's archive unless one with its content label exists."""
    client = engine_client()
    t0 = time.monotonic()
    if not force and _current(client, spec, suite):
        return LabImageResult(spec.tag, 0.0, built=False)
    if shutil.which("mmdebstrap") is None:
        raise GymctlError(f"mmdebstrap is not installed; it builds the lab's {spec.kind} image without a registry: apt-get install mmdebstrap")
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(spec.packages)}", *SLIM, suite, "-"]
    imp = ["docker", "import"]
    for change in (*spec.changes, f"LABEL {LABEL_IMAGE}={spec.kind}", f"LABEL {LABEL_CONTENT}={spec.content(suite)}"):
        imp += ["--change", change]
    imp += ["-", spec.tag]
    with tempfile.TemporaryFile() as err_file:  # a file, not a pipe nobody reads (it would fill and stall mmdebstrap)
        strap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file)
        assert strap.stdout is not None
        importer = subprocess.run(imp, stdin=strap.stdout, capture_output=True, check=False)
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
    return LabImageResult(spec.tag, time.monotonic() - t0, built=True)
