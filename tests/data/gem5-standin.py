#!/usr/bin/env python3
"""Test double for gem5 (CI has no gem5), installed as the env image's gem5
binary in the orchestration tests. It takes the command line hackback gives
configs/hackback_fs.py and plays both ends of the method without simulating:

  boot:    writes cpt.<tick>/ (m5.cpt, a memory file, the disk's cow file) and
           a console log, as if the guest had asked for a checkpoint;
  restore: runs the readfile script with bash right here, in place of the
           guest, and prints what the image's rcS prints around it; with
           --checkpoint-dir and a script that calls hackback-checkpoint, writes
           a child cpt.<tick>/ there instead.

It also tries to write every input mount, and fails loudly if one is writable:
the tests rely on that to show inputs are mounted read-only. The environment
variable HACKBACK_STANDIN (passed with the test's RunSpec), or standin=<how> on
the kernel command line, can make it end differently: "no-checkpoint" (boot
ends by m5 exit), "crash" (no result), "exit-after-result" (an ok result, then
gem5 exits 1, as when it dies in its exit-time work), "no-stats" (an ok result
and exit 0, but no stats.txt), "cut-stats" (a stats.txt cut off inside a dump),
"missing-dump" (one dump fewer than the result announces).
"""
import argparse
import json
import os
import subprocess
import sys
import time

argv = sys.argv[1:]
outdir = argv[argv.index("--outdir") + 1]
rest = argv[argv.index("--outdir") + 2:]
rest = rest[1:]  # the run script's path
ap = argparse.ArgumentParser()
ap.add_argument("mode")
for opt in ("--kernel", "--disk", "--kernel-args", "--memory", "--cores", "--cpu", "--caches", "--l1d", "--l1i", "--l2",
            "--checkpoint-dir", "--checkpoint", "--script", "--max-sim-seconds", "--max-wall-seconds",
            "--switch-from", "--switch-after-insts", "--warmup-insts"):
    ap.add_argument(opt)
args, _unknown = ap.parse_known_args(rest)  # options a stand-in need not act on (--checkpoint-at, --in-roi, ...)
behaviour = ""
if args.kernel_args and "standin=" in args.kernel_args:
    behaviour = args.kernel_args.split("standin=", 1)[1].split()[0]

for probe in (args.kernel, args.disk, args.checkpoint, args.script):
    if not probe:
        continue
    try:
        if os.path.isdir(probe):
            open(os.path.join(probe, ".standin-write-probe"), "w").close()
        else:
            open(probe, "r+b").close()
    except OSError:
        continue
    print(f"fatal: stand-in could write {probe}: an input is mounted writable", flush=True)
    sys.exit(70)

console = os.path.join(outdir, "board.pc.com_1.device")
result = {"mode": args.mode, "cpu": args.cpu, "caches": args.caches, "memory": args.memory, "cores": int(args.cores),
          "start_tick": 0, "host_seconds": 0.1, "console_last_line": "", "panic_line": "", "gem5_exit_cause": ""}
if behaviour == "crash":
    print("fatal: stand-in told to crash", flush=True)
    sys.exit(1)
print("HACKBACK-PROGRESS " + json.dumps({"sim": 0.5, "host": 1.0, "console": "stand-in booting"}), flush=True)
if args.mode == "boot":
    tick = 1234567890
    with open(console, "w") as f:
        f.write(f"Linux version stand-in\nHACKBACK-READY booted; taking the checkpoint\n")
    if behaviour == "no-checkpoint":
        result.update(cause="exit", expected="checkpoint", ok=False, final_tick=tick, sim_seconds=tick / 1e12)
    else:
        cpt = os.path.join(args.checkpoint_dir, f"cpt.{tick}")
        os.makedirs(cpt)
        with open(os.path.join(cpt, "m5.cpt"), "w") as f:
            f.write(f"[Globals]\nversion_tags=stand-in\n[board]\nmemory={args.memory}\n")
        with open(os.path.join(cpt, "board.physmem.store0.pmem"), "wb") as f:
            f.write(os.urandom(4096))
        with open(os.path.join(cpt, "board.pc.south_bridge.ide.disks.image.cow"), "wb") as f:
            f.write(b"cow")
        print(f"HACKBACK-CHECKPOINT saving {cpt}", flush=True)
        result.update(cause="checkpoint", expected="checkpoint", ok=True, final_tick=tick, sim_seconds=tick / 1e12,
                      checkpoint=f"cpt.{tick}")
else:
    start = int(args.checkpoint.rsplit(".", 1)[1])
    if "standin=" in open(args.script, errors="replace").read():  # the script may ask for an ending too
        behaviour = open(args.script, errors="replace").read().split("standin=", 1)[1].split()[0]
    with open(console, "w") as f:
        f.write("HACKBACK-RESTORED reading the script (m5 readfile)\n")
        f.flush()
        status = subprocess.run(["bash", args.script], stdout=f, stderr=subprocess.STDOUT).returncode
        f.write(f"HACKBACK-SCRIPT-EXIT {status}\n")
    for name in ("config.ini", "config.json"):
        with open(os.path.join(outdir, name), "w") as f:
            f.write("{}\n" if name.endswith("json") else "[root]\n")
    text = open(args.script).read()
    if "hackback-checkpoint" in text and args.checkpoint_dir:  # a restore that saves a child checkpoint
        tick = start + 10**9
        cpt = os.path.join(args.checkpoint_dir, f"cpt.{tick}")
        os.makedirs(cpt)
        for name, data in (("m5.cpt", "[root]\n"), ("board.physmem.store0.pmem", "child memory"),
                           ("board.pc.south_bridge.ide.disks.image.cow", "cow")):
            with open(os.path.join(cpt, name), "w") as f:
                f.write(data)
        result.update(cause="checkpoint", expected="checkpoint", ok=True, start_tick=start, final_tick=tick,
                      sim_seconds=0.001, checkpoint=f"cpt.{tick}")
    elif "m5 checkpoint" in text or "hackback-checkpoint" in text:  # what the guest would have done
        result.update(cause="checkpoint", expected="exit", ok=False, start_tick=start, final_tick=start + 10**9, sim_seconds=0.001)
    else:
        result.update(cause="exit", expected="exit", ok=True, start_tick=start, final_tick=start + 10**9, sim_seconds=0.001)
DUMP = ("\n---------- Begin Simulation Statistics ----------\nsimSeconds 0.001000 # stand-in\n"
        "simInsts 12345 # stand-in\n---------- End Simulation Statistics   ----------\n")
result["stats_dumps"] = 2 if behaviour == "missing-dump" else 1  # gem5's own dump at exit
with open(os.path.join(outdir, "hackback-result.json"), "w") as f:
    json.dump(result, f)
print("HACKBACK-RESULT " + json.dumps(result), flush=True)
# What gem5 does after the run script's result: its final stats dump (atexit).
if behaviour != "no-stats":
    with open(os.path.join(outdir, "stats.txt"), "w") as f:
        f.write(DUMP[: len(DUMP) // 2] if behaviour == "cut-stats" else DUMP)
if behaviour == "exit-after-result":
    print("panic: stand-in told to die after its result", flush=True)
    sys.exit(1)
sys.exit(0 if result["ok"] else 3)
