#!/bin/bash
# Runs in the tools image on a gem5 binary brought from elsewhere (and on each
# one hackback builds): does it start here, and what is it? Prints either
#   HACKBACK-MISSING-LIBS lib1 lib2 ...   (shared libraries that do not resolve)
# or gem5's own output with the probe's `HACKBACK-PROBE {json}` line.
# BIN is the binary's path inside the container, OUT a writable directory.
set -u
if out=$(ldd "$BIN" 2>&1); then
    missing=$(printf '%s\n' "$out" | awk '/not found/ {printf "%s ", $1}')
    if [ -n "$missing" ]; then
        echo "HACKBACK-MISSING-LIBS $missing"
        exit 0
    fi
fi  # ldd fails on a static executable: nothing to resolve
exec "$BIN" --outdir "$OUT" /hackback/configs/hackback_probe.py
