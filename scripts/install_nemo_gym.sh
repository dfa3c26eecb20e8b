#!/usr/bin/env bash
# Install NVIDIA NeMo Gym 0.7.0 beside gymctl (its own venv, never gymctl's) for the compatibility tests
# and the side-by-side benchmark, as ../shared/NEMO_GYM.md describes. Idempotent; safe to run concurrently.
#   venv:        ${GYMCTL_NEMO_GYM_VENV:-~/.cache/gymctl-bench/nemo-gym-0.7.0}
#   server venvs: $VENV/work/<server_type>/<impl>/.venv  (where ng_run looks, run from $VENV/work)
set -euo pipefail
VENV="${GYMCTL_NEMO_GYM_VENV:-$HOME/.cache/gymctl-bench/nemo-gym-0.7.0}"
PY313="${PYTHON313:-}"
if [ -z "$PY313" ]; then  # pyenv's shim for python3.13 fails unless 3.13 is selected: use the interpreter itself
  PY313=$(ls "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$PY313" ] && command -v python3.13 >/dev/null && python3.13 -V >/dev/null 2>&1; then PY313=$(command -v python3.13); fi
[ -n "$PY313" ] || { echo "install_nemo_gym: no python3.13 found (NeMo Gym 0.7.0 needs 3.13)" >&2; exit 1; }
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ -f "$VENV/.complete" ]; then exit 0; fi
echo "Installing NeMo Gym 0.7.0 into $VENV (a few minutes) ..." >&2
"$PY313" -m venv "$VENV"
"$VENV/bin/pip" install -q --ignore-requires-python nemo-gym==0.7.0 uv
WORK="$VENV/work"
for dir in resources_servers/example_single_tool_call responses_api_agents/simple_agent responses_api_models/openai_model environment_servers/legacy_agent; do
  mkdir -p "$WORK/$dir"
  "$VENV/bin/uv" venv -q --seed --allow-existing --python "$PY313" "$WORK/$dir/.venv"
  "$VENV/bin/uv" pip install -q --compile-bytecode --python-version 3.13.14 --python "$WORK/$dir/.venv/bin/python" \
    nemo-gym==0.7.0 'ray[default]==2.60.0' openai==2.44.0
done
touch "$VENV/.complete"
echo "NeMo Gym 0.7.0 ready: $VENV/bin/ng_run (run it from $WORK)" >&2
