#!/usr/bin/env bash
# Install gymctl (editable) into ./.venv, created if missing. Usage: scripts/setup.sh [cli|dev]  (default: cli)
# cli is the plain install (every command; the extra is kept as an alias); dev adds the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-cli}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$extra-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "Installing gymctl[$extra] into .venv (log: .venv/install.log) ..." >&2
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[$extra]"; } > .venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    echo "setup: pip install failed; the full log is .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
