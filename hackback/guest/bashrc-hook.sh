
# >>> hackback: hack-back rcS on the serial console's autologin >>>
if [ -z "${RUNSCRIPT_VAR:-}" ] && { [ "${HACKBACK_CONSOLE:-}" = ttyS0 ] || [ "$(tty)" = /dev/ttyS0 ]; }; then
    /root/hack_back_ckpt.rcS
fi
# <<< hackback <<<
