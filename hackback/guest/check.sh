#!/bin/bash
# Reads facts out of a hack-back disk image without mounting it (sfdisk, debugfs,
# dumpe2fs); hackback/image.py compares them with what they should be.
# Usage: check.sh IMAGE. Prints `KEY value` lines.
set -uo pipefail
img=$1
start=$(sfdisk -J "$img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]; print(p["partitions"][0]["start"], p["partitions"][0]["type"], p["id"])') || { echo "ERROR no partition table"; exit 0; }
read -r sector ptype disk_id <<< "$start"
echo "PART1_TYPE $ptype"
echo "DISK_ID $disk_id"
fs="$img?offset=$((sector * 512))"

features=$(dumpe2fs -h "$fs" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
echo "FS_FEATURES $features"
echo "FS_UUID $(dumpe2fs -h "$fs" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')"

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
echo "SHA /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf $(digest /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf)"
bashrc=$(debugfs -R "cat /root/.bashrc" "$fs" 2>/dev/null)
if grep -q '^ *\(/root/hack_back_ckpt.rcS\|\. /root/hack_back_ckpt.rcS\)' <<< "$bashrc"; then echo "BASHRC_RUNS_RCS yes"; else echo "BASHRC_RUNS_RCS no"; fi
