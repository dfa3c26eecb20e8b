"""The shipped alert rules: valid for Prometheus, each alert's promtool test cases pass, and the wheel carries the rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from gymctl.config.paths import shipped_dir
from tests.conftest import IN_CI, REPO

RULES = REPO / "monitoring" / "alerts.yml"
RULE_TESTS = REPO / "monitoring" / "tests" / "alerts_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if IN_CI:
            pytest.fail("promtool is missing: scripts/install_prometheus.sh (run by scripts/test.sh) installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus, or scripts/install_prometheus.sh)")
    return found


def test_promtool_accepts_the_rules_file():
    res = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_rule_tests_pass_and_cover_every_alert():
    res = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case.get("alert_rule_test", [])}
    assert alerts == tested, f"alerts without a promtool case: {sorted(alerts - tested)}"
    assert {"GymctlRegistrationsBelowExpected", "GymctlServerDown", "GymctlServerRestarted", "GymctlHeadRoundTripSlow",
            "GymctlGpuUnderused", "GymctlCollectorFailing"} <= alerts


def test_the_rules_ship_with_gymctl():
    assert (shipped_dir("monitoring") / "alerts.yml").read_text() == RULES.read_text()
    assert "monitoring" in (REPO / "setup.py").read_text() and "graft monitoring" in (REPO / "MANIFEST.in").read_text()
