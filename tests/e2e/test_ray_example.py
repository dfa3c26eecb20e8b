"""The Ray co-location example, run as a new user would: it starts a local cluster, trains three GRPO-shaped steps on
rollouts with token ids, and leaves no Ray process and no Ray files behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytest.importorskip("ray")


def test_the_grpo_shaped_example_collects_token_ids_and_cleans_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    run = subprocess.run([sys.executable, str(REPO / "examples/trainer/ray_grpo.py"), "--steps", "2", "--prompts", "2", "--group", "3"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = [json.loads(line) for line in run.stdout.splitlines()]
    assert [s["step"] for s in steps] == [0, 1] and all(s["rollouts"] == 6 and s["mean_reward"] == 1.0 for s in steps)
    assert all(s["generated_tokens"] == 6 * 2 * 5 for s in steps)  # two model turns per rollout, five token ids each
    temp = re.search(r"removed (\S+)", run.stderr)
    assert temp, run.stderr[-2000:]
    assert not Path(temp.group(1)).exists()
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if temp.group(1) in " ".join(p.info["cmdline"] or [])]
    assert not left
