"""The head's /ui in a real headless browser (Debian's chromium): it loads, shows every instance, and turns an instance red
within a lease when its process is killed; screenshots of both are saved beside the test's files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, IN_CI, SCRIPTED_CONFIG, http_json, start_deployment, stop_deployment

SERVED = {"example_single_tool_call", "policy_model", AGENT}
LEASE_S = 6.0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium is missing: scripts/install_chromium.sh (run by scripts/test.sh) installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium, or scripts/install_chromium.sh)")
    return found


def browse(url: str, screenshot: Path, profile: Path) -> str:
    """Load `url` headless: save a screenshot and return the DOM as the browser built it."""
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
              f"--user-data-dir={profile}", "--window-size=1200,700"]
    shot = subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=60)
    assert shot.returncode == 0 and screenshot.stat().st_size > 1000, shot.stderr[-2000:]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def rows(dom: str) -> dict[str, str]:
    return {name: cls for cls, name in re.findall(r'<tr class="(\w+)" data-instance="([^"]+)"', dom)}


def test_the_status_page_in_chromium_shows_every_instance_and_a_killed_one_red(tmp_path):
    dep = start_deployment(["--topology", "separated", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path, timeout=60)
    try:
        url = dep.head_url + "/ui"
        dom = browse(url, tmp_path / "ui-healthy.png", tmp_path / "profile")
        assert rows(dom) == {name: "ok" for name in SERVED}, dom[:3000]
        assert "3 of 3 instances healthy" in dom
        pid = next(i["pid"] for i in http_json(dep.head_url + "/server_instances")[1] if i["process_name"] == "example_single_tool_call")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        dom = browse(url, tmp_path / "ui-killed.png", tmp_path / "profile")
        assert time.monotonic() - killed < LEASE_S + 5
        found = rows(dom)
        assert found["example_single_tool_call"] == "bad" and found["policy_model"] == "ok" and found[AGENT] == "ok", found
        assert "2 of 3 instances healthy" in dom
        print(f"screenshots: {tmp_path / 'ui-healthy.png'} {tmp_path / 'ui-killed.png'}")
    finally:
        stop_deployment(dep)
