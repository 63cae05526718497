#!/usr/bin/env bash
# scripts/ensure_chromium.sh   (used by `make test` and tests/recipes/test_compare_report.py)
# Installs Debian's `chromium` with apt-get when /usr/bin/chromium is missing; the HTML report test opens
# the report in headless Chromium. Prints the path of the browser on success; exits non-zero otherwise.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  echo "$CHROMIUM"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ensure_chromium: not root and no sudo: install the 'chromium' package by hand" >&2
    exit 1
  fi
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium >&2
echo "ensure_chromium: installed chromium in $(( $(date +%s) - start )) s" >&2

if [ ! -x "$CHROMIUM" ]; then
  echo "ensure_chromium: apt-get finished but $CHROMIUM is missing" >&2
  exit 1
fi
echo "$CHROMIUM"
