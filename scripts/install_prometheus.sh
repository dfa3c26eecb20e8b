#!/usr/bin/env bash
# promtool (rule tests) and the prometheus binary from Debian's `prometheus` package, without starting its service:
# a policy-rc.d that forbids every start is in place while apt runs (Debian's way to install a daemon unstarted).
# Idempotent; the monitoring tests use promtool, and the offline Prometheus image is built from the same package.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_prometheus: not root; apt-get install prometheus yourself for the alert-rule and monitoring tests" >&2
  exit 0
fi
echo "install_prometheus: installing Debian's prometheus package (promtool) with its service left stopped ..." >&2
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
bash "$(dirname "$0")/apt_install.sh" --no-install-recommends prometheus
promtool --version 2>&1 | head -1 >&2
