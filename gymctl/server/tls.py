"""The TLS side of gymctl's clients: https:// servers are verified against the system's CAs, or GYMCTL_TLS_CA_FILE's
(the local CA a `gymctl up --tls` stack generated; `gymctl status` / `collect` set it from the stack's record)."""

from __future__ import annotations

import functools
import ssl

from gymctl.server.settings import ServerSettings


@functools.lru_cache(maxsize=8)
def _context(cafile: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        from gymctl.errors import ConfigError

        raise ConfigError(f"GYMCTL_TLS_CA_FILE={cafile}: not a readable PEM CA certificate ({e}); point it at the stack's "
                          "ca.pem (.gymctl/stacks/<project>/tls/ca.pem) or unset it", source="environment") from None


def client_ssl(settings: ServerSettings | None = None) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` takes: the configured CA's context, else True (the default verification)."""
    cafile = (settings or ServerSettings.from_env()).tls_ca_file
    return _context(cafile) if cafile else True
