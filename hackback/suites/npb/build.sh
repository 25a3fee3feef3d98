#!/bin/bash
# Build one NPB member at one class, twice from the same sources, then run the
# native build: hackback's suite-tools image runs it (hackback/bench.py) with
#   /src             the NPB tree, read-only
#   /hackback/suite  this folder (make.def, the patch, the native hooks)
#   /out             where the builds land: gem5/, native/, native.log
# Arguments: MEMBER CLASS THREADS TRIALS COUNTS (TRIALS is GAPBS's; COUNTS=1:
# run the native build under callgrind, collection toggled by its hooks).
set -euo pipefail
member=$1 class=$2 threads=$3 counts=$5

build() {  # $1: gem5 (hooks call m5 workbegin/workend) or native (hooks print and toggle callgrind)
    local tree=/tmp/npb-$1
    rm -rf "$tree"
    cp -a /src/. "$tree"
    cd "$tree"
    patch -s -p1 < /hackback/suite/reproducible.patch
    cp /hackback/suite/make.def config/make.def
    if [ "$1" = native ]; then cp /hackback/suite/hooks-native.c common/hooks.c; fi
    mkdir -p bin  # the tarball has none, and the link fails without it
    echo "== $1 build: make $member CLASS=$class HOOKS=1"
    make "$member" CLASS="$class" HOOKS=1 2>&1 | tee "/out/build-$1.log" | grep -E "^(gfortran|gcc|cc) .* -o |error|Error" || true
    [ -x "bin/$member.$class.x" ] || { echo "no bin/$member.$class.x: see build-$1.log"; tail -20 "/out/build-$1.log"; exit 1; }
    mkdir -p "/out/$1"
    cp "bin/$member.$class.x" "/out/$1/"
}

build gem5
build native
mkdir -p /tmp/run && cd /tmp/run  # MG reads mg.input from here when there is one: there is none
echo "== native run: OMP_NUM_THREADS=$threads ./$member.$class.x"
if [ "$counts" = 1 ]; then
    OMP_NUM_THREADS=$threads valgrind --tool=callgrind --collect-atstart=no \
        --callgrind-out-file=/out/native/callgrind.out "/out/native/$member.$class.x" > /out/native.log 2> /out/native/valgrind.log
else
    OMP_NUM_THREADS=$threads "/out/native/$member.$class.x" > /out/native.log
fi
grep -E "Verification|ROI" /out/native.log || true
