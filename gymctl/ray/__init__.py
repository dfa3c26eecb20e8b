"""gymctl on Ray: GymActor (a trainer's environment actor), cluster attach/start, and --topology ray. Needs `pip install 'gymctl[ray]'`.

Importing this package imports Ray; nothing else in gymctl does unless Ray is asked for.
"""

from __future__ import annotations

try:
    import ray  # noqa: F401 -- checked here so every entry point says how to get it
except ImportError:
    from gymctl.errors import RayNotInstalledError

    raise RayNotInstalledError() from None

from gymctl.ray.actor import GymActor, GymActorImpl

__all__ = ["GymActor", "GymActorImpl"]
