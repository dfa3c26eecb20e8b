"""gymctl's own record of a compose stack it started, kept beside its compose file (`.gymctl/stacks/<project>/`, owner-only):
the head's published URL (its scheme), the CA that signed the stack's certificate and the stack's token, so that
`gymctl status` and `gymctl collect` with no --head find the stack and talk to it. No value here is ever rendered
into a compose file, an image or a log: the token reaches the containers through Compose's environment only."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

STACKS_DIR = Path(".gymctl") / "stacks"  # under the working directory: one folder per compose project
RECORD_FILE = "stack.json"
TOKEN_FILE = "auth_token"
TLS_DIR = "tls"


@dataclass
class StackRecord:
    """Where a stack's head answers and how to talk to it (the token itself stays in its own owner-only file)."""

    project: str
    topology: str
    head_url: str
    token_file: str | None = None
    ca_file: str | None = None  # --tls: the CA clients trust (generated, or the one given with the certificate)

    @property
    def scheme(self) -> str:
        return self.head_url.partition("://")[0]

    def token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            return Path(self.token_file).read_text().strip() or None
        except OSError:
            return None


def stack_dir(project: str, root: Path | None = None) -> Path:
    return (root or Path.cwd()) / STACKS_DIR / project


def private_dir(path: Path) -> Path:
    """`path` created if missing, readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` to a file only its owner can read (0600 from its creation on, never briefly wider)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    os.replace(tmp, path)
    return path


def stack_token(project: str, root: Path | None = None) -> tuple[str, Path]:
    """The stack's token (generated once, 256 random bits, kept for the next `up`) and the file holding it."""
    path = stack_dir(project, root) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        write_private(path, token + "\n")
    return token, path


def save_record(record: StackRecord, root: Path | None = None) -> Path:
    return write_private(stack_dir(record.project, root) / RECORD_FILE, json.dumps(asdict(record), indent=2) + "\n")


def load_record(project: str, root: Path | None = None) -> StackRecord | None:
    try:
        data = json.loads((stack_dir(project, root) / RECORD_FILE).read_text())
        return StackRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def records(root: Path | None = None) -> list[StackRecord]:
    base = (root or Path.cwd()) / STACKS_DIR
    found = [load_record(p.name, root) for p in sorted(base.iterdir())] if base.is_dir() else []
    return [r for r in found if r is not None]


def find_record(*, head_url: str | None = None, project: str | None = None, root: Path | None = None) -> StackRecord | None:
    """The record of `project`; else the one whose head is `head_url`; else, with neither given, the only one there is."""
    if project is not None:
        return load_record(project, root)
    known = records(root)
    if head_url is not None:
        want = head_url.rstrip("/")
        return next((r for r in known if r.head_url == want), None)
    return known[0] if len(known) == 1 else None


def forget(project: str, root: Path | None = None) -> None:
    """After `down`: the record, the token and the TLS files go (the compose file stays, as before)."""
    folder = stack_dir(project, root)
    for name in (RECORD_FILE, TOKEN_FILE):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / TLS_DIR, ignore_errors=True)
