"""Every package gymctl imports is a declared dependency, and a server image's set is part of that declaration."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gymctl.docker.context import SERVER_REQUIREMENTS, server_requirements
from tests.conftest import REPO

# Imported only inside `try: ... except ImportError` (a speed-up, never required).
OPTIONAL = {"uvloop"}
# Imported only where that feature is used (never at start-up): declared by an extra, not the core install.
EXTRA_ONLY = {"ray": "ray"}  # module -> extra


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "gymctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top != "gymctl" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_import_in_gymctl_is_a_declared_dependency():
    declared = _declared()
    owners = packages_distributions()
    missing = {}
    for module, where in _third_party_imports().items():
        if module in OPTIONAL:
            continue
        if module in EXTRA_ONLY:
            extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][EXTRA_ONLY[module]]
            assert any(canonicalize_name(Requirement(r).name) == module for r in extra), f"{module} is not in the {EXTRA_ONLY[module]} extra"
            continue
        dists = {canonicalize_name(d) for d in owners.get(module, [module])}
        if not dists & set(declared):
            missing[module] = sorted(where)
    assert not missing, f"imported but not in pyproject.toml [project] dependencies: {missing}"


def test_the_scan_sees_the_cli_and_docker_packages():
    seen = set(_third_party_imports())
    assert {"typer", "rich", "jinja2", "python_on_whales", "docker", "packaging", "yaml"} <= seen


def test_a_server_image_installs_the_declared_server_set_and_no_cli_tooling():
    declared = _declared()
    for raw in SERVER_REQUIREMENTS:
        req = Requirement(raw)
        assert str(declared.get(canonicalize_name(req.name))) == str(req), f"{raw} differs from pyproject.toml"
    names = {canonicalize_name(Requirement(r).name) for r in server_requirements()}
    assert {"fastapi", "uvicorn", "typer", "orjson"} <= names
    assert not names & {"rich", "jinja2", "python-on-whales", "docker", "psutil", "packaging"}


def test_the_command_line_starts_without_the_server_stack():
    """`gymctl --help`, `status`, `ps` ... load every verb module: none of them may pull in FastAPI or aiohttp at import."""
    import subprocess
    import sys

    probe = "import sys; import gymctl.cli.main; print(sorted(m for m in ('fastapi', 'aiohttp', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert out == "[]", f"imported at CLI start-up: {out}"
