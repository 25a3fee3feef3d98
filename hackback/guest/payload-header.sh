#!/bin/sh
# HACKBACK-PAYLOAD v1 script=@script@ script_bytes=@script_bytes@ index=@index@ index_bytes=@index_bytes@ stream_bytes=@stream_bytes@
# A restore script with a payload, made by hackback (`hackback restore --payload DIR`):
# the script is bytes @script@..+@script_bytes@ of this file; the index at byte @index@
# has a line per entry, TYPE<tab>MODE<tab>SIZE<tab>OFFSET<tab>PATH<tab>TARGET
# (f: a file whose SIZE bytes are at OFFSET; d: a directory; l: a symlink to
# TARGET). /sbin/hackback-guest reads each file straight from m5 readfile into
# /root/payload (no copy in between); a guest made before that helper runs this
# header instead, which does the same from this file ($0) with dd.
set -e
root=/root/payload
# dd exits 0 on short input: a stream cut short would run the script on cut files.
have=$(wc -c < "$0")
if [ "$have" -ne @stream_bytes@ ]; then
    echo "HACKBACK: the payload stream is $have of its @stream_bytes@ bytes: cut short, the script is not run"
    echo "HACKBACK-SCRIPT-EXIT payload"
    exit 125
fi
mkdir -p "$root" /root/results
tab=$(printf '\t')
tail -c +@index_from@ "$0" | head -c @index_bytes@ | while IFS="$tab" read -r type mode size off path target; do
    case "$type" in
        d) mkdir -p "$root/$path"; chmod "$mode" "$root/$path" ;;
        f) mkdir -p "$(dirname "$root/$path")"
           dd if="$0" of="$root/$path" iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none
           chmod "$mode" "$root/$path" ;;
        l) mkdir -p "$(dirname "$root/$path")"; ln -sfn "$target" "$root/$path" ;;
    esac
done
tail -c +@script_from@ "$0" | head -c @script_bytes@ > "$0.own"
echo "HACKBACK-PAYLOAD unpacked into $root"
cd "$root"
set +e
IFS= read -r first < "$0.own" || true
case "$first" in
    '#!'*) ${first#\#!} "$0.own" ;;
    *) /bin/sh "$0.own" ;;
esac
exit $?
