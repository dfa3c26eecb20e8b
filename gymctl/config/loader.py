"""Read NeMo Gym YAML configs: nested `config_paths`, `env.yaml`, command-line overrides, one merged tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from gymctl.config.overrides import Overrides, parse_overrides
from gymctl.config.paths import resolve_existing
from gymctl.errors import ConfigError

CONFIG_PATHS_KEY = "config_paths"


def _merge(base: DictConfig, top: DictConfig) -> DictConfig:
    """`top` over `base`; OmegaConf types the merge of two mappings as any config, it is a mapping."""
    merged = OmegaConf.merge(base, top)
    assert isinstance(merged, DictConfig)
    return merged


@dataclass
class LoadedTree:
    """The merged, not yet resolved config plus where each top-level key came from."""

    tree: DictConfig
    origins: dict[str, str] = field(default_factory=dict)  # top-level key -> "file:line"
    files: list[Path] = field(default_factory=list)


def text_line_of(path: Path, offset: int) -> str:
    """":<line>" of a byte offset in a file (for errors), or "" when it cannot be read."""
    try:
        lines = path.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return ""
    return f":{lines}"


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse one YAML file into a mapping and the line of each top-level key."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError("the config path is a directory; pass a .yaml config file", source=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file: {e.strerror}", source=str(path)) from None
    except UnicodeDecodeError as e:
        line = text_line_of(path, e.start)
        raise ConfigError(f"the config file is not UTF-8 text (byte {e.start}); is it a YAML file?", source=f"{path}{line}") from None
    if "\x00" in text:
        raise ConfigError("the config file holds NUL bytes: it is not a text file; pass a YAML config file", source=str(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        if not isinstance(e, yaml.MarkedYAMLError):  # a reader error: characters YAML does not allow
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"the config file is not valid YAML text: {first}", source=str(path)) from None
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = e.problem or str(e)
        raise ConfigError(f"YAML syntax error: {problem}; fix the file and run again", source=f"{path}{line}") from None
    if data is None:
        raise ConfigError("the config file is empty; it should map instance names to server blocks", source=str(path))
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level is a {type(data).__name__}, not a mapping; a config maps instance names to server blocks",
            source=str(path),
        )
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, lines


class _Reader:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.origins: dict[str, str] = {}
        self.files: list[Path] = []

    def find(self, name: str, included_from: Path | None) -> Path:
        extra = [included_from.parent] if included_from else []
        found, tried = resolve_existing(name, self.cwd, extra_roots=None)
        if found is None and extra:
            found, more = resolve_existing(name, extra[0])
            tried += more
        if found is not None and found.is_dir():
            where = f" (included from {included_from})" if included_from else ""
            yamls = sorted(found.glob("*.yaml")) or sorted(found.glob("configs/*.yaml"))
            hint = f", e.g. {yamls[0]}" if yamls else ""
            raise ConfigError(f"config path {name!r} is a directory ({found}){where}; pass a .yaml config file{hint}")
        if found is None or not found.is_file():
            where = f" (included from {included_from})" if included_from else ""
            looked = ", ".join(str(t) for t in dict.fromkeys(tried))
            raise ConfigError(f"config file {name!r} not found{where}; looked in: {looked}")
        return found

    def load(self, path: Path, stack: tuple[Path, ...] = ()) -> DictConfig:
        if path in stack:
            chain = " -> ".join(str(p) for p in (*stack, path))
            raise ConfigError(f"config_paths include themselves in a cycle: {chain}", source=str(path))
        data, lines = read_yaml(path)
        self.files.append(path)
        includes = data.pop(CONFIG_PATHS_KEY, None) or []
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list):
            raise ConfigError("must be a list of file paths", source=f"{path}:{lines.get(CONFIG_PATHS_KEY, 1)}", key_path=CONFIG_PATHS_KEY)
        merged = OmegaConf.create({})
        for inc in includes:
            merged = _merge(merged, self.load(self.find(str(inc), path), (*stack, path)))
        for key in data:
            self.origins[str(key)] = f"{path}:{lines.get(str(key), 1)}"
        try:
            own = OmegaConf.create(data)
        except Exception as e:  # noqa: BLE001 -- OmegaConf rejects some YAML shapes (e.g. non-string keys) with more than its own errors
            raise ConfigError(f"not a valid config: {e}", source=str(path)) from None
        return _merge(merged, own)  # the including file wins over what it includes


def load_tree(
    config_paths: list[str] | None = None,
    args: list[str] | None = None,
    *,
    cwd: Path | None = None,
    env_yaml: Path | bool | None = True,
) -> LoadedTree:
    """Merge config files (lowest first) < env.yaml < command-line overrides into one unresolved tree."""
    cwd = (cwd or Path.cwd()).resolve()
    overrides: Overrides = parse_overrides(args or [])
    reader = _Reader(cwd)
    paths = list(config_paths or [])

    env_tree = OmegaConf.create({})
    env_path = cwd / "env.yaml" if env_yaml is True else (env_yaml or None)
    if env_path is not None and Path(env_path).is_file():
        env_data, _ = read_yaml(Path(env_path))
        extra = env_data.pop(CONFIG_PATHS_KEY, None) or []
        paths = [*([extra] if isinstance(extra, str) else extra), *paths]
        env_tree = OmegaConf.create(env_data)
        for key in env_data:
            reader.origins.setdefault(str(key), str(env_path))

    paths += overrides.config_paths
    if not paths:
        raise ConfigError(
            "no config given; pass --config FILE (gymctl) or \"+config_paths=[a.yaml,b.yaml]\" (ng_run)"
        )
    tree = OmegaConf.create({})
    for name in paths:
        tree = _merge(tree, reader.load(reader.find(name, None)))
    tree = _merge(tree, env_tree)
    for key, value in overrides.settings:
        try:
            OmegaConf.update(tree, key, value, merge=True, force_add=True)
        except Exception as e:  # noqa: BLE001 -- whatever OmegaConf raises for a bad override is the user's mistake: a ConfigError
            raise ConfigError(f"cannot set {key}={value!r}: {e}", source="command line") from None
        reader.origins.setdefault(key.split(".")[0], "command line")
    return LoadedTree(tree=tree, origins=reader.origins, files=reader.files)
