"""vllm_model's converter against NeMo Gym 0.7.0's own round-trip fixtures, read from an installed nemo-gym.

The fixtures are NeMo Gym's file and are not copied here: the test finds them through
NEMO_GYM_ROUND_TRIP_DATA (the JSON file), NEMO_GYM_SRC (an unpacked nemo-gym source tree), the
installed `responses_api_models` / `nemo_gym` packages, or the NeMo Gym venv the bench and e2e tests use
(GYMCTL_NEMO_GYM_VENV, default ~/.cache/gymctl-bench/nemo-gym-0.7.0), and skips, saying so, when none is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from gymctl.server.loader import load_module
from tests.conftest import REPO

RELATIVE = Path("responses_api_models/vllm_model/tests/round_trip_test_data.json")
app_module = load_module(REPO / "servers/responses_api_models/vllm_model", "app.py", "responses_api_models", "vllm_model")
req = app_module.convert_request


def fixture_path() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("NEMO_GYM_ROUND_TRIP_DATA"):
        candidates.append(Path(os.environ["NEMO_GYM_ROUND_TRIP_DATA"]))
    if os.environ.get("NEMO_GYM_SRC"):
        candidates.append(Path(os.environ["NEMO_GYM_SRC"]) / RELATIVE)
    for package in ("responses_api_models", "nemo_gym"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(location).parent / RELATIVE)
    venv = Path(os.environ.get("GYMCTL_NEMO_GYM_VENV", Path.home() / ".cache/gymctl-bench/nemo-gym-0.7.0"))
    candidates.extend(p / RELATIVE for p in sorted(venv.glob("lib/python3*/site-packages")))
    return next((p for p in candidates if p.is_file()), None)


FIXTURES = fixture_path()
pytestmark = [pytest.mark.nemo_gym, pytest.mark.skipif(
    FIXTURES is None,
    reason="NeMo Gym 0.7.0's round_trip_test_data.json not found: install nemo-gym==0.7.0 (scripts/install_nemo_gym.sh), or set NEMO_GYM_SRC "
           "to its unpacked source tree (or NEMO_GYM_ROUND_TRIP_DATA to the file)",
)]


@pytest.mark.parametrize(("expected_key", "token_ids"), [
    ("expected_output", False),
    ("expected_output_return_token_id_information", True),
])
def test_converter_matches_nemo_gym_round_trip_fixture(expected_key, token_ids):
    data = json.loads(FIXTURES.read_text())  # type: ignore[union-attr]
    # As NeMo Gym's own test builds it: a system and a user message, then a whole Response's output.
    items = [{"content": "system", "role": "system"}, {"content": "hello!", "role": "user"}, *data["input"]["output"]]
    # NeMo Gym's converter stage puts reasoning back as <think> text; its fixtures are of that stage.
    chat = req.responses_to_chat({"input": items}, req.ConvertOptions(reasoning="think_tags", token_ids=token_ids))
    expected = data[expected_key]["messages"]
    assert len(chat["messages"]) == len(expected)
    for i, (got, want) in enumerate(zip(chat["messages"], expected, strict=True)):
        assert got == want, f"message {i} differs"
