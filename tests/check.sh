#!/bin/bash
# check.sh -- the one test command (README): install what is missing on a
# Debian 12 machine (as root), build warning-free, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v make >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
fi
make deps
make -j"$(nproc)" WERROR=1
exec make check WERROR=1
