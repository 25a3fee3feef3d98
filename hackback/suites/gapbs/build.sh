#!/bin/bash
# Build one GAPBS kernel, twice from the same sources, then run the native
# build on the input graph: hackback's suite-tools image runs it
# (hackback/bench.py) with
#   /src             the GAPBS tree, read-only
#   /hackback/suite  this folder (roi.patch, hackback_roi.h)
#   /out             where the builds land: gem5/, native/, native.log
# Arguments: MEMBER GRAPH THREADS TRIALS COUNTS (GRAPH: g<N> or u<N>; COUNTS=1:
# run the native build under callgrind, collection toggled around each trial).
set -euo pipefail
member=$1 graph=$2 threads=$3 trials=$4 counts=$5

build() {  # $1: gem5 (m5 workbegin/workend around each trial) or native (callgrind toggles there)
    local tree=/tmp/gapbs-$1 flags=""
    [ "$1" = native ] && flags="-DHACKBACK_ROI_NATIVE"
    rm -rf "$tree"
    cp -a /src/. "$tree"
    cd "$tree"
    patch -s -p1 < /hackback/suite/roi.patch
    cp /hackback/suite/hackback_roi.h src/
    echo "== $1 build: make $member CXX='g++ -static $flags'"
    # CXX, not CXX_FLAGS: setting CXX_FLAGS would drop -fopenmp.
    make "$member" CXX="g++ -static $flags" 2>&1 | tee "/out/build-$1.log"
    [ -x "$member" ] || { echo "no $member: see build-$1.log"; exit 1; }
    mkdir -p "/out/$1"
    cp "$member" "/out/$1/"
}

build gem5
build native
mkdir -p /tmp/run && cd /tmp/run
args=(-"${graph:0:1}" "${graph:1}" -n "$trials" -v)
echo "== native run: OMP_NUM_THREADS=$threads ./$member ${args[*]}"
if [ "$counts" = 1 ]; then
    OMP_NUM_THREADS=$threads valgrind --tool=callgrind --collect-atstart=no \
        --callgrind-out-file=/out/native/callgrind.out "/out/native/$member" "${args[@]}" > /out/native.log 2> /out/native/valgrind.log
else
    OMP_NUM_THREADS=$threads "/out/native/$member" "${args[@]}" > /out/native.log
fi
grep -E "Verification|Trial Time" /out/native.log || true
