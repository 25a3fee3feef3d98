#!/bin/bash
# Reads facts out of a hack-back disk image without mounting it (sfdisk, debugfs,
# dumpe2fs); hackback/image.py compares them with what they should be.
# Usage: check.sh IMAGE. Prints `KEY value` lines.
set -uo pipefail
img=$1
start=$(sfdisk -J "$img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]; q=p["partitions"][0]; print(q["start"], q["size"], q["type"], p["id"], p.get("sectorsize", 512))') || { echo "ERROR no partition table"; exit 0; }
read -r sector psize ptype disk_id ssize <<< "$start"
echo "PART1_TYPE $ptype"
echo "DISK_ID $disk_id"
# Sizes in bytes: a partition shorter than its filesystem (or a disk cut short)
# mounts, then fails once the guest writes or reads past the end.
echo "PART1_BYTES $((psize * ssize))"
echo "PART1_END_BYTES $(((sector + psize) * ssize))"
echo "DISK_BYTES $(stat -c %s "$img")"
fs="$img?offset=$((sector * ssize))"

header=$(dumpe2fs -h "$fs" 2>/dev/null)
echo "FS_FEATURES $(sed -n 's/^Filesystem features: *//p' <<< "$header")"
echo "FS_UUID $(sed -n 's/^Filesystem UUID: *//p' <<< "$header")"
blocks=$(sed -n 's/^Block count: *//p' <<< "$header")
bsize=$(sed -n 's/^Block size: *//p' <<< "$header")
if [ -n "$blocks" ] && [ -n "$bsize" ]; then echo "FS_BYTES $((blocks * bsize))"; fi

# debugfs does not follow symlinks in paths (/sbin -> usr/sbin on merged-/usr systems).
resolve() {
    local out="" comp link
    IFS=/ read -ra parts <<< "${1#/}"
    for comp in "${parts[@]}"; do
        link=$(debugfs -R "stat \"$out/$comp\"" "$fs" 2>/dev/null | sed -n 's/^Fast link dest: "\(.*\)"$/\1/p')
        case "$link" in
            "") out="$out/$comp" ;;
            /*) out="$link" ;;
            *) out="$out/$link" ;;
        esac
    done
    echo "$out"
}
digest() {
    local p
    p=$(resolve "$1")
    if debugfs -R "stat \"$p\"" "$fs" 2>&1 | grep -q "File not found"; then echo missing; return; fi
    debugfs -R "cat \"$p\"" "$fs" 2>/dev/null | sha256sum | cut -d' ' -f1
}
echo "SHA /sbin/m5 $(digest /sbin/m5)"
echo "SHA /root/hack_back_ckpt.rcS $(digest /root/hack_back_ckpt.rcS)"
echo "SHA /sbin/hackback-fastinit $(digest /sbin/hackback-fastinit)"
echo "SHA /sbin/hackback-guest $(digest /sbin/hackback-guest)"
echo "SHA /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf $(digest /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf)"
bashrc=$(debugfs -R "cat /root/.bashrc" "$fs" 2>/dev/null)
if grep -q '^ *\(/root/hack_back_ckpt.rcS\|\. /root/hack_back_ckpt.rcS\)' <<< "$bashrc"; then echo "BASHRC_RUNS_RCS yes"; else echo "BASHRC_RUNS_RCS no"; fi
