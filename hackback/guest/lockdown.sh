#!/bin/bash
# The last provisioning step of `hackback image`, after the user layer (if any):
# what the finished hack-back image must not have. Run by Packer as root.
set -euo pipefail
step() { echo "HACKBACK-STEP $*"; }

step "lock down: no sshd, no networkd, root locked"
# The simulated guest needs neither; each would cost simulated boot time.
for unit in ssh.service systemd-networkd.service systemd-networkd.socket; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
done
rm -f /etc/ssh/sshd_config.d/hackback-provisioning.conf
passwd -l root >/dev/null  # autologin needs no password; nothing else should log in

step "clean up"
rm -rf /tmp/hackback /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/journal/*
sync
step "provisioning done"
