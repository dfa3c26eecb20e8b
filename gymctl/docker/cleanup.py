"""Removing what gymctl created, by label: stacks (containers, networks, volumes) and images."""

from __future__ import annotations

from gymctl.docker.cli import engine_client
from gymctl.docker.images import LABEL_IMAGE


def remove_labelled(project: str | None = None) -> dict[str, int]:
    """Force-remove containers, then networks and volumes, carrying io.gymctl.project (=project, or any)."""
    from gymctl.docker.backend import default_backend

    return default_backend().remove_labelled(project)


def gymctl_images() -> list[tuple[str, int, str]]:
    client = engine_client()
    out = []
    for img in client.images.list(filters={"label": LABEL_IMAGE}):
        for tag in img.tags:  # untagged ones are the classic builder's layer cache
            out.append((tag, int(img.attrs.get("Size", 0)), (img.labels or {}).get(LABEL_IMAGE, "")))
    return sorted(out)


def remove_images(include_base: bool = False, prefix: str | None = None) -> list[str]:
    """Remove images labelled io.gymctl.image (base only if asked; prefix: only tags starting with it)."""
    client = engine_client()
    removed = []
    for img in client.images.list(filters={"label": LABEL_IMAGE}):
        if (img.labels or {}).get(LABEL_IMAGE) == "base" and not include_base:
            continue
        tags = [t for t in img.tags if prefix is None or t.startswith(prefix)]
        for tag in tags:
            client.images.remove(tag, force=True)
            removed.append(tag)
    client.images.prune(filters={"dangling": True})
    return removed
