#!/usr/bin/env bash
# Debian's chromium (headless) and a font, for the status page's browser test (tests/e2e/test_monitoring_ui_browser.py). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_chromium: not root; apt-get install chromium yourself for the status page's browser test" >&2
  exit 0
fi
echo "install_chromium: installing Debian's chromium (headless browser tests) ..." >&2
bash "$(dirname "$0")/apt_install.sh" --no-install-recommends chromium fonts-dejavu-core
chromium --version >&2
