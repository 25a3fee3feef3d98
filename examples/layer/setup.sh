#!/bin/sh
# Runs as root in the provisioning VM, after user_packages and user_files.
set -eu
echo "2^20" | bc > /opt/hackback-example/computed-at-build
echo "setup.sh ran at image build time" > /opt/hackback-example/setup-ran
