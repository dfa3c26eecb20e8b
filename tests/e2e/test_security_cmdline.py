"""`gymctl run --topology separated --set policy_api_key=...`: the key is on no child's command line (ps), the servers work."""

from __future__ import annotations

import psutil

from tests.conftest import AGENT, example_rows, http_json

KEY = "sk-e2e-cmdline-0123456789"


def test_a_secret_given_with_set_is_on_no_childs_command_line(separated):
    run = separated("--set", f"policy_api_key={KEY}", env={"GYMCTL_SEPARATED_START": "exec"})
    children = run.children()
    assert len(children) >= 4
    for p in children:
        assert KEY not in " ".join(p.cmdline()), p.cmdline()
    assert any("${oc.env:GYMCTL_SECRET_0}" in " ".join(p.cmdline()) for p in children)
    status, body = http_json(run.url_of(AGENT) + "/run", example_rows()[0])
    assert status == 200 and body["reward"] == 1.0  # type: ignore[index]
    assert psutil.Process(run.proc.pid).is_running()
