#!/usr/bin/env bash
# The whole test suite on a fresh machine: install everything (packages, the Compose v2 plugin, the
# offline base image and the server images), then run unit, integration (real Docker) and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
export PATH="$PWD/.venv/bin:$PATH"
export TESTCONTAINERS_RYUK_DISABLED=true
if [ -x scripts/bootstrap_docker.sh ]; then
  scripts/bootstrap_docker.sh
fi
if [ -f scripts/install_nemo_gym.sh ] && [ "${GYMCTL_SKIP_NEMO_GYM:-0}" != 1 ]; then
  bash scripts/install_nemo_gym.sh || echo "NeMo Gym install failed: its compatibility tests will say so" >&2
fi
exec python -m pytest tests "$@"
