#!/bin/bash
# Stage 2 of `hackback image`, the base: run by Packer's shell provisioner as root
# in the booted image. Files arrive in /tmp/hackback. The base stays
# provisionable (sshd, networkd, root's password): a user layer is provisioned
# on a copy of it, and lockdown.sh runs last, after the layer.
set -euo pipefail
step() { echo "HACKBACK-STEP $*"; }
src=/tmp/hackback

step "m5 at /sbin/m5 (and /sbin/gem5)"
install -m 0755 "$src/m5" /sbin/m5
ln -sf m5 /sbin/gem5

step "hack-back rcS at /root/hack_back_ckpt.rcS, run from /root/.bashrc"
install -m 0755 "$src/hack_back_ckpt.rcS" /root/hack_back_ckpt.rcS
sed -i '/# >>> hackback/,/# <<< hackback <<</d' /root/.bashrc
cat "$src/bashrc-hook.sh" >> /root/.bashrc

step "fast boot init at /sbin/hackback-fastinit (kernel argument init=/sbin/hackback-fastinit)"
install -m 0755 "$src/fastinit" /sbin/hackback-fastinit

step "root autologin on the serial console"
install -D -m 0644 "$src/autologin.conf" /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf

step "lean boot: no network wait, no timers"
# Every second of boot is simulated; none of these is needed to reach a shell and m5.
systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
for unit in systemd-resolved.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
            e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer dpkg-db-backup.timer cron.service; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
done
systemctl set-default multi-user.target >/dev/null 2>&1

step "clean up"
rm -rf "$src" /var/cache/apt/archives/*.deb /var/log/journal/*
sync
step "base provisioning done"
