#!/bin/bash
# Runs in the tools image as the host user. Two modes:
#   config: base config + fragment -> $B/.config.merged (the host checks it)
#   build:  install the merged config when it changed, make vmlinux bzImage
# SRC (read-only Linux tree), B (kept build tree), FRAGMENT, BASE_CONFIG
# (a make target or /hackback/base.config), JOBS.
set -euo pipefail
mode=$1
# Reproducible: the same source and config give the same vmlinux byte for byte,
# so switching a config back and forth does not invalidate checkpoints taken
# with it (the version string otherwise carries a build count and the time).
KMAKE=(make -C "$SRC" O="$B" ARCH=x86_64 KBUILD_BUILD_USER=hackback KBUILD_BUILD_HOST=hackback
       KBUILD_BUILD_VERSION=1 KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970")
mkdir -p "$B"

if [ "$mode" = config ]; then
    # A scratch O= directory, so regenerating an unchanged config does not
    # touch the kept tree's .config (its mtime alone would trigger work).
    scratch=/tmp/kconfig
    mkdir -p "$scratch"
    if [ -f "$BASE_CONFIG" ]; then
        cp "$BASE_CONFIG" "$scratch/.config"
        make -s -C "$SRC" O="$scratch" ARCH=x86_64 olddefconfig
    else
        make -s -C "$SRC" O="$scratch" ARCH=x86_64 "$BASE_CONFIG"
    fi
    # -m: merge only; olddefconfig then resolves dependencies.
    (cd "$scratch" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$scratch" "$scratch/.config" "$FRAGMENT")
    make -s -C "$SRC" O="$scratch" ARCH=x86_64 olddefconfig
    cp "$scratch/.config" "$B/.config.merged"
    echo "HACKBACK-STEP config merged"
    exit 0
fi

if ! cmp -s "$B/.config.merged" "$B/.config"; then
    cp "$B/.config.merged" "$B/.config"
    echo "HACKBACK-STEP config changed: incremental rebuild"
fi
# The merged config is already resolved against this source (olddefconfig),
# so the tree's .config is left alone when unchanged: no needless rebuilds.
# exec: make itself gets the stop signal and removes half-written targets.
echo "HACKBACK-STEP compiling with $JOBS jobs"
exec "${KMAKE[@]}" -j"$JOBS" vmlinux bzImage
