#!/bin/sh
# Builds the pointer chase static for x86-64 in hackback's tools image (the one
# any invoke task builds first) into bin/chase, the payload's binary:
#   sh examples/pointer-chase/build.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
docker=/usr/bin/docker
[ -x "$docker" ] || docker=docker
tools=$("$docker" images --format '{{.Repository}}:{{.Tag}}' hackback-tools | head -n 1)
if [ -z "$tools" ]; then
    echo "build.sh: no hackback-tools image here yet; run an invoke task first (e.g. invoke image --dry-run builds nothing, invoke kernel does)" >&2
    exit 1
fi
mkdir -p "$here/bin"
"$docker" run --rm --network none -u "$(id -u):$(id -g)" -v "$here:/src" -w /src "$tools" \
    gcc -static -O2 -Wall -Werror -o bin/chase chase.c
echo "built $here/bin/chase with $tools"
