#!/bin/bash
# Stage 1 of `hackback image`, run as root in the tools image (needs CAP_SYS_ADMIN
# for debootstrap's chroot mounts; no loop devices, no --privileged):
# bootstrap a root filesystem, make it bootable under QEMU for provisioning,
# and lay it into a raw disk with one ext4 partition, first on the disk.
# Inputs (environment): SUITE MIRROR PACKAGES SIZE_MIB FS_UUID DISK_ID
#   ROOT_PASSWORD RNG_SEED OWNER (uid:gid to hand the outputs to). Output dir: /out.
set -euo pipefail
phase() { echo "HACKBACK-PHASE $*"; }
rootfs=/work/rootfs
mkdir -p /work

phase "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="${PACKAGES// /,}" "$SUITE" "$rootfs" "$MIRROR"

phase "configure for the provisioning boot"
echo hackback > "$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 hackback\n' > "$rootfs/etc/hosts"
# Root named by UUID: it is vda1 under QEMU and sda1 under gem5.
echo "UUID=$FS_UUID / ext4 errors=remount-ro 0 1" > "$rootfs/etc/fstab"
# DHCP on QEMU's user network so Packer can reach sshd; provisioning turns it off again.
mkdir -p "$rootfs/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$rootfs/etc/systemd/network/20-dhcp.network"
chroot "$rootfs" systemctl enable systemd-networkd.service >/dev/null 2>&1
mkdir -p "$rootfs/etc/ssh/sshd_config.d"
printf 'PermitRootLogin yes\nPasswordAuthentication yes\nUseDNS no\n' > "$rootfs/etc/ssh/sshd_config.d/hackback-provisioning.conf"
echo "root:$ROOT_PASSWORD" | chroot "$rootfs" chpasswd
phase "hackback-guest (static) at /sbin/hackback-guest (and hackback-checkpoint), the RNG seed at /etc/hackback/rng-seed"
gcc -static -Os -Wall -Werror -o /out/hackback-guest "$(dirname "$0")/hackback-guest.c"
install -m 0755 /out/hackback-guest "$rootfs/usr/sbin/hackback-guest"
ln -sf hackback-guest "$rootfs/usr/sbin/hackback-checkpoint"  # a restored script's child checkpoint
install -d -m 0700 "$rootfs/etc/hackback"
printf '%s' "$RNG_SEED" > "$rootfs/etc/hackback/rng-seed"
chmod 0600 "$rootfs/etc/hackback/rng-seed"
chroot "$rootfs" dpkg-query -W -f='${Package}\t${Version}\n' > /out/packages.tsv
cp "$rootfs"/boot/vmlinuz-* /out/vmlinuz
cp "$rootfs"/boot/initrd.img-* /out/initrd.img
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

phase "ext4 from the tree (mke2fs -d) and a raw disk (sfdisk + dd, sparse)"
part_mib=$((SIZE_MIB - 1))
mke2fs -q -t ext4 -d "$rootfs" -U "$FS_UUID" -L root /work/part.img "${part_mib}M"
rm -rf "$rootfs"
truncate -s "${SIZE_MIB}M" /out/base.img
printf 'label: dos\nlabel-id: 0x%s\nstart=2048, type=83, bootable\n' "$DISK_ID" | sfdisk -q /out/base.img
dd if=/work/part.img of=/out/base.img bs=1M seek=1 conv=sparse,notrunc status=none
rm /work/part.img
chown -R "$OWNER" /out
phase "stage 1 done: $(du -h /out/base.img | cut -f1) allocated of ${SIZE_MIB} MiB"
