"""The server kit every server shares: app wrapping, /health, registration, ServerClient, auth."""

from gymctl.server.client import ServerClient, ServerResponse
from gymctl.server.kit import ServerKit, new_app

__all__ = ["ServerClient", "ServerKit", "ServerResponse", "new_app"]
