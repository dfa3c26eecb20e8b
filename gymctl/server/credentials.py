"""Secrets inside values: credentials in URLs, signed query strings, bearer tokens; found and redacted in text.

Servers import this (it is part of gymctl.server); gymctl.config.redact builds the config-tree redaction on it.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from gymctl.hosts import url_host

REDACTED = "<redacted>"

# Query parameters that carry a secret: signatures of pre-signed URLs (AWS, GCS, Azure SAS), tokens, keys.
SECRET_PARAM = re.compile(
    r"^(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|"
    r"awsaccesskeyid|token|access_token|refresh_token|id_token|auth|key|api_key|apikey|api-key|"
    r"secret|client_secret|password|pwd|code)$",
    re.IGNORECASE,
)
# scheme://[user[:password]@]host...: any URL-like token in free text, including DSNs (postgres://, redis://).
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s'\"<>`]+")
# "Bearer <token>" / "Basic <base64>": a credential has a digit in it ("Basic single-step tool calling" is prose).
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,}")


def _netloc(host: str | None, port: int | None) -> str:
    if host is None:
        return ""
    shown = url_host(host)
    return f"{shown}:{port}" if port else shown


def redact_url(url: str) -> str:
    """The URL with its password (user:PASS@) and secret query parameters replaced by <redacted>."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None or (parts.username and "@" in netloc):
        user = parts.username or ""
        netloc = f"{user}:{REDACTED}@{_netloc(parts.hostname, port)}" if parts.password is not None else f"{REDACTED}@{_netloc(parts.hostname, port)}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAM.match(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if SECRET_PARAM.match(k) else v) for k, v in pairs], safe="<>")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def has_secret(url: str) -> bool:
    """True when the URL carries credentials or a secret query parameter."""
    return redact_url(url) != url


def redact_text(text: str) -> str:
    """Free text (an error, a log line) with every URL's credentials and every bearer/basic credential redacted."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if "earer" in text or "asic" in text:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without user:password@, an `Authorization: Basic ...` value for them or None).

    aiohttp refuses a request whose URL carries credentials when an Authorization header is also set;
    taking them out of the URL lets a server send exactly one Authorization header, and keeps them out
    of every error text that names the URL.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    clean = urlunsplit((parts.scheme, _netloc(parts.hostname, parts.port), parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return clean, "Basic " + base64.b64encode(pair.encode()).decode()
