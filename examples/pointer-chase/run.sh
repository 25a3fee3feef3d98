#!/bin/sh
# The restore script for the pointer chase: runs in /root/payload, where the
# payloads put bin/chase and params (WORKING_SET=… STEPS=…), and leaves its
# output in /root/results, which lands in the run directory's results/.
#   invoke restore --script examples/pointer-chase/run.sh \
#     --payload examples/pointer-chase/bin --payload examples/pointer-chase/inputs/l1 --cpu o3 --caches l1l2
set -eu
. ./params
mkdir -p /root/results
./chase "$WORKING_SET" "$STEPS" "/root/results/chase-$WORKING_SET.txt"
cat "/root/results/chase-$WORKING_SET.txt"
