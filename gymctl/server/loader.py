"""Load a server implementation (`servers/<type>/<impl>/app.py`) by path and build its app."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from gymctl.errors import ConfigError, StartupError


def module_name(server_type: str, impl: str, entrypoint: str) -> str:
    stem = Path(entrypoint).stem
    return f"gymctl_servers.{server_type}.{impl}.{stem}"


def load_module(dir_path: Path, entrypoint: str, server_type: str, impl: str) -> ModuleType:
    """Import `dir_path/entrypoint` under a unique name, once per process."""
    name = module_name(server_type, impl, entrypoint)
    if name in sys.modules:
        return sys.modules[name]
    path = Path(dir_path) / entrypoint
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot load {path}: not a Python module", instance=impl)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise StartupError(f"{path} failed to import: {type(e).__name__}: {e}", instance=impl) from e
    for attr in ("Config", "create_app"):
        if not hasattr(module, attr):
            raise StartupError(f"{path} defines no `{attr}`; a server module exports a pydantic `Config` and `create_app(config, kit)`", instance=impl)
    return module


def load_sibling(anchor_file: str, anchor_module: str, name: str) -> ModuleType:
    """Import `<name>.py` beside a server's app.py, once, under a name unique to that server.

    Server dirs are not packages (every entry point is `app.py`), so a server's own helper modules
    load by path: `policy = load_sibling(__file__, __name__, "policy")`.
    """
    full = f"{anchor_module}_{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, Path(anchor_file).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot load {name}.py beside {anchor_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
    return module


def validate_config(module: ModuleType, block: dict[str, Any], *, source: str, key_path: str) -> BaseModel:
    """Validate an instance block against the server's `Config` (ConfigError names the key)."""
    try:
        config_class: type[BaseModel] = module.Config
        return config_class.model_validate(block)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConfigError(f"{err['msg']}{more}", source=source, key_path=f"{key_path}.{loc}" if loc else key_path) from None
