"""Scale, small enough for CI: 2,000 rollouts in flight against a server whose open-files limit (3,000) cannot hold
2,000 inbound plus 2,000 upstream connections. Before the connection budget this lost most rollouts to resets
(libuv drops what it cannot accept); now the server stays inside its limit, answers the excess 503 + Retry-After,
and both the bench's neutral client and `gymctl collect` finish every rollout. The full sweep (10,000 in flight
on a 20,000-file machine) is `python -m bench.scale`, see bench/README.md."""

from __future__ import annotations

import pytest

from bench.scale import probe

IN_FLIGHT = 2000
NOFILE = 3000


@pytest.mark.parametrize("driver", ["bench", "collect"])
def test_2000_in_flight_past_the_servers_open_files_limit_lose_nothing(tmp_path, driver):
    result = probe("gymctl_all_in_one", IN_FLIGHT, ideal=200.0, driver=driver, requests=2500, log_dir=tmp_path, system_nofile=NOFILE)
    assert result["failures"] == 0, result["failure_samples"]
    assert result["succeeded"] == 2500
    server_files = [n for label, n in result["peak_open_files"].items() if label.startswith("system:")]
    assert server_files and max(server_files) < NOFILE  # never at the limit, where connections are dropped
    if driver == "bench":
        assert result["deferred"] > 0  # the excess was told to wait, not dropped
