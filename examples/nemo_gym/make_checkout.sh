#!/usr/bin/env bash
# A directory laid out as a NeMo Gym checkout, from the servers the installed nemo-gym 0.7.0 package ships, each with
# its per-server .venv (those scripts/install_nemo_gym.sh built), to try NeMo Gym's own servers under gymctl:
#   examples/nemo_gym/make_checkout.sh /tmp/gym && cd /tmp/gym
#   gymctl run --topology separated -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \
#     -c responses_api_models/openai_model/configs/openai_model.yaml +policy_base_url=http://127.0.0.1:8000/v1 \
#     +policy_api_key=KEY +policy_model_name=NAME
# Mixed: leave out responses_api_agents/simple_agent and responses_api_models/openai_model (MIXED=1) and gymctl's own
# agent and model serve beside NeMo Gym's resources server (-c responses_api_models/scripted_model/configs/scripted_model.yaml).
set -euo pipefail
DEST="${1:?usage: make_checkout.sh DIR}"
VENV="${GYMCTL_NEMO_GYM_VENV:-$HOME/.cache/gymctl-bench/nemo-gym-0.7.0}"
[ -f "$VENV/.complete" ] || { echo "make_checkout: NeMo Gym 0.7.0 is not installed at $VENV; run scripts/install_nemo_gym.sh" >&2; exit 1; }
SITE=$(ls -d "$VENV"/lib/python3.*/site-packages | tail -1)
SERVERS="resources_servers/example_single_tool_call environment_servers/legacy_agent"
[ "${MIXED:-0}" = 1 ] || SERVERS="$SERVERS responses_api_agents/simple_agent responses_api_models/openai_model"
for rel in $SERVERS; do
  mkdir -p "$DEST/$(dirname "$rel")"
  cp -r "$SITE/$rel" "$DEST/$rel"
  ln -sfn "$VENV/work/$rel/.venv" "$DEST/$rel/.venv"
done
echo "NeMo Gym checkout at $DEST: $SERVERS" >&2
