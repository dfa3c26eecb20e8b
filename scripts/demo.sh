#!/usr/bin/env bash
# The main job on a fresh machine: install, bring the example environment up all-in-one on the embedded
# scripted policy (no API key, no Docker), collect rollouts through it, print the summary, shut down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh cli
out="${1:-/tmp/gymctl-demo/rollouts.jsonl}"
mkdir -p "$(dirname "$out")"
rm -f "$out" "${out%.jsonl}_failures.jsonl" "${out%.jsonl}_aggregate_metrics.json"
exec .venv/bin/gymctl collect \
  -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \
  -c responses_api_models/scripted_model/configs/scripted_model.yaml \
  --agent example_single_tool_call_simple_agent \
  --input servers/resources_servers/example_single_tool_call/data/example.jsonl \
  --output "$out" --num-repeats 8
