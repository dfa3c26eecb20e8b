"""Redaction of a config tree by key name and by value: what the head serves and what logs and errors show.

A value is secret when its key says so (`api_key`, `api-key`, `db_pwd`, `dsn`, `hf_token`, ...) or when it
holds one itself: credentials in a URL (`http://user:PASS@host/v1`, `postgres://u:PASS@db/x`), a signed
query string (`...?sig=...`, `X-Amz-Signature=...`), a bearer credential in a string.
"""

from __future__ import annotations

import re
from typing import Any

from gymctl.server.credentials import REDACTED, redact_text

# Key names whose values are secrets wherever they appear. `-`, `_`, `.` and case do not matter.
SECRET_NAME = re.compile(
    r"(api[-_.]?key|apikey|token$|secret|passw(or)?d|pwd|passphrase|credential|authorization|cookie|dsn|"
    r"private[-_.]?key|signature|(^|[-_.])auth$|(^|[-_.])key$|headers$|(^|[-_.])sig$)",
    re.IGNORECASE,
)


def is_secret_name(key: object) -> bool:
    """True for a key whose value is a secret by its name alone."""
    return bool(SECRET_NAME.search(str(key)))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def redact_value(value: Any) -> Any:
    """A string with its embedded secrets redacted (URLs' credentials, signed queries); other values as given."""
    return redact_text(value) if isinstance(value, str) else value


def redact(value: Any) -> Any:
    """A copy of a config tree with every secret replaced by <redacted>: by key name, then by value."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(k) and not _empty(v) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return redact_value(value)


def secret_paths(value: Any, prefix: str = "") -> list[str]:
    """The key paths of every secret value in a tree (what `gymctl check` names; never the values)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if is_secret_name(k) and not _empty(v) and not isinstance(v, (dict, list)):
                out.append(path)
            else:
                out.extend(secret_paths(v, path))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(secret_paths(v, f"{prefix}[{i}]"))
    elif isinstance(value, str) and redact_text(value) != value:
        out.append(prefix)
    return out
