#!/bin/sh
# A restore script that uses what the layer installed: a package (bc) and files.
set -eu
echo "bc says 2^10 = $(echo '2^10' | bc)"
cat /opt/hackback-example/greeting.txt
cat /opt/hackback-example/setup-ran
echo "at build time bc gave $(cat /opt/hackback-example/computed-at-build)"
