"""The server kit every server shares: app wrapping, /health, registration, ServerClient, auth."""

from gymctl.errors import GymctlError, ReplicaLostError, ServerError
from gymctl.server.client import ServerClient, ServerResponse
from gymctl.server.kit import ServerKit, new_app
from gymctl.server.loader import load_sibling

__all__ = ["GymctlError", "ReplicaLostError", "ServerClient", "ServerError", "ServerKit", "ServerResponse", "load_sibling", "new_app"]
