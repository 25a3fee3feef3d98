"""Where a simulated boot spends its time, from its console log.

    python3 benchmarks/boot_profile.py <work>/checkpoints/default/console.log [--top 15]

Prints the largest gaps between consecutive kernel log lines (printk
timestamps are simulated seconds) with the line that ends each gap, and, when
the boot ran with `initcall_debug` on the kernel command line (e.g.
`invoke checkpoint --name profile` with checkpoint.kernel_args = "initcall_debug"),
the slowest initcalls. Simulated time maps to host time through the CPU's busy
fraction: on the atomic CPU ~0.7 host s per busy simulated ms here, idle time
almost free.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
INITCALL = re.compile(r"initcall (\S+) returned -?\d+ after (\d+) usecs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("console", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    lines = args.console.read_text(errors="replace").splitlines()
    stamped = [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, lines) if m]
    if not stamped:
        raise SystemExit(f"{args.console}: no timestamped kernel lines (CONFIG_PRINTK_TIME off?)")
    gaps = sorted(((b[0] - a[0], b[0], b[1]) for a, b in zip(stamped, stamped[1:])), reverse=True)
    last = stamped[-1][0]
    print(f"{len(stamped)} kernel lines, last at {last:.3f} simulated s")
    print(f"\nlargest gaps (the line after each gap; {args.top} of {len(gaps)}):")
    for gap, at, text in gaps[: args.top]:
        print(f"  {gap * 1000:8.1f} ms  at {at:8.4f}  {text[:110]}")
    calls = sorted(((int(us), name) for name, us in INITCALL.findall("\n".join(lines))), reverse=True)
    if calls:
        total = sum(us for us, _ in calls)
        print(f"\nslowest initcalls ({len(calls)} ran, {total / 1e6:.3f} simulated s in all):")
        for us, name in calls[: args.top]:
            print(f"  {us / 1000:8.1f} ms  {name}")
    rest = [ln for ln in lines if not STAMP.match(ln)]
    if rest:
        print(f"\n{len(rest)} untimestamped lines after the kernel's (user space: init, login, rcS)")


if __name__ == "__main__":
    main()
