#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for hackback: a Docker engine (started
# if it is not running), debootstrap and git (for the air-gapped base image and
# the gem5 clone), then hackback itself with its test extras in .venv
# (scripts/setup-python.sh). Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v git >/dev/null 2>&1 || need+=(git)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup-host: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's client matches Debian's engine; a newer client elsewhere on PATH may not.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
if ! $SUDO "$DOCKER" version >/dev/null 2>&1; then
  echo "setup-host: starting dockerd"
  if ! { command -v systemctl >/dev/null 2>&1 && $SUDO systemctl start docker >/dev/null 2>&1; }; then
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    $SUDO "$DOCKER" version >/dev/null 2>&1 && break
    sleep 1
  done
  $SUDO "$DOCKER" version >/dev/null 2>&1 || { echo "setup-host: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

bash scripts/setup-python.sh
echo "setup-host: ready (docker $($SUDO "$DOCKER" version --format '{{.Server.Version}}'))"
