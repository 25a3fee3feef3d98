
# >>> hackback: hack-back rcS on the serial console's autologin >>>
if [ "$(tty)" = /dev/ttyS0 ] && [ -z "${RUNSCRIPT_VAR:-}" ]; then
    /root/hack_back_ckpt.rcS
fi
# <<< hackback <<<
