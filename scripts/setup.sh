#!/usr/bin/env bash
# Install gymctl into ./.venv (created if missing). Usage: scripts/setup.sh [cli|dev]  (default: cli)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-cli}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$extra-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extra]"
  touch "$stamp"
fi
