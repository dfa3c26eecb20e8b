"""The production checklist (`gymctl check`): pure over a config and the stack it would render."""

from gymctl.checks.model import Finding, Level
from gymctl.checks.run import CheckContext, run_checks

__all__ = ["CheckContext", "Finding", "Level", "run_checks"]
