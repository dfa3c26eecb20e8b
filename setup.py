"""Build hook: a wheel carries the repository's servers/, compose_templates/ and images/ as gymctl/_bundled/."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# These folders stay at the repository root (the design card's layout); gymctl.config.paths finds either copy.
SHIPPED = ("servers", "compose_templates", "images", "monitoring")
# Tests, caches, virtualenvs and the local build context (images/.context) are not shipped.
SKIP = shutil.ignore_patterns("__pycache__", "*.py[cod]", ".*", "venv", "tests", "*.egg-info")


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's own folders
        dest = Path(self.build_lib) / "gymctl" / "_bundled"
        for name in SHIPPED:
            if (dest / name).exists():
                shutil.rmtree(dest / name)
            shutil.copytree(ROOT / name, dest / name, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithShipped})
