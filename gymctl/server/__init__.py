"""The server kit every server shares: app wrapping, /health, registration, ServerClient, auth."""

from gymctl.errors import GymctlError, ServerError
from gymctl.server.client import ServerClient, ServerResponse
from gymctl.server.kit import ServerKit, new_app

__all__ = ["GymctlError", "ServerClient", "ServerError", "ServerKit", "ServerResponse", "new_app"]
