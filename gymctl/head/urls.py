"""What a registered URL may be: scheme, host and port only (no path, query or credentials)."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_server_url(value: str) -> str:
    """The URL a server registers (`url`, `host_url`), normalised without a trailing slash; ValueError says what is wrong.

    The head probes and routes to these URLs: a path or a query would let a registration aim the head's
    `/probe` (and every client's calls) at any address and path; credentials would be served back in clear.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{value!r} is not a URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a registered URL must not carry credentials (user:password@)")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    if port is None:
        raise ValueError(f"{value!r} has no port: register scheme://host:port")
    if port == 0:
        raise ValueError(f"{value!r}: port 0 is not a port (1-65535)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError(f"{value!r}: a registered URL is scheme://host:port, with no path, query or fragment")
    return value.rstrip("/")
