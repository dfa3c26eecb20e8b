#!/usr/bin/env bash
# Install Debian packages for the set-up scripts: `scripts/apt_install.sh PKG...`. Refreshes the package lists only
# when they are more than an hour old (several installers run in one set-up; one `apt-get update` serves them all).
# Options pass through (e.g. --no-install-recommends). Needs root.
set -euo pipefail
stamp=/var/lib/apt/lists/.gymctl-updated
if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
  apt-get update -qq >/dev/null
  touch "$stamp"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
