#!/usr/bin/env bash
# The Python part of the set-up: hackback with its test extras in a virtual
# environment, .venv beside this script's repo. Stock Debian 12 and Ubuntu 24.04
# refuse system-wide pip installs (PEP 668) and ship venv without ensurepip
# until python3-venv is installed. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
  echo "setup: installing python3 and python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
echo "setup: hackback installed in $PWD/.venv (.venv/bin/invoke, .venv/bin/hackback; or '. .venv/bin/activate')"
