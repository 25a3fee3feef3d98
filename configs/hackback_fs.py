# hackback's gem5 run script (gem5 v24 standard library, X86Board).
#
#   gem5.opt --outdir=OUT hackback_fs.py boot    --kernel K --disk D --root-arg ARG --checkpoint-dir OUT/cpt ...
#   gem5.opt --outdir=OUT hackback_fs.py restore --kernel K --disk D --root-arg ARG --checkpoint CPT --script S ...
#
# boot:    boot Linux; when the guest runs `m5 checkpoint`, save cpt.<tick> into
#          --checkpoint-dir and stop (gem5's default handler would continue).
# restore: restore CPT with the CPU model and caches asked for; the guest reads
#          --script through `m5 readfile`; stop at the guest's `m5 exit`. With
#          --checkpoint-dir, the guest's next `m5 checkpoint` (hackback-checkpoint
#          in the script) saves a child cpt.<tick> there and ends the run.
# Either way the run is simulated in slices so that progress is printed, the
# console is watched for a kernel panic, and limits are enforced. The result
# goes to OUT/hackback-result.json; the exit status is 0 only for the expected
# ending. hackback runs this inside its env image; a researcher can run it (or
# a copy of it) the same way, see the README ("Your own gem5 config").
import argparse
import json
import os
import sys
import time
from pathlib import Path

import m5
import m5.defines
from gem5.components.boards.x86_board import X86Board
from gem5.components.cachehierarchies.classic.no_cache import NoCache
from gem5.components.cachehierarchies.classic.private_l1_cache_hierarchy import PrivateL1CacheHierarchy
from gem5.components.cachehierarchies.classic.private_l1_private_l2_cache_hierarchy import (
    PrivateL1PrivateL2CacheHierarchy,
)
from gem5.components.memory.single_channel import SingleChannelDDR3_1600
from gem5.components.processors.cpu_types import CPUTypes
from gem5.components.processors.simple_processor import SimpleProcessor
from gem5.isas import ISA
from gem5.resources.resource import DiskImageResource, KernelResource
from gem5.simulate.exit_event import ExitEvent
from gem5.simulate.simulator import Simulator

# gem5 v24.0's `requires()` (called by every stdlib core) looks up the Ruby
# coherence protocol even when none is required, and raises on a gem5 built
# without Ruby (hackback's default: RUBY=n, classic caches only). Nothing here
# needs a protocol, so answer "none" when the build has none.
if not str(m5.defines.buildEnv.get("PROTOCOL", "")):
    import gem5.utils.requires as _requires

    _requires.get_runtime_coherence_protocol = lambda: None

# What hackback and this script agree on (markers, file names, endings, cache
# defaults), stated once in a file beside this one: a copy of this script needs
# it too. gem5 runs a config file with __file__ set (m5/main.py).
CONTRACT = json.loads((Path(__file__).resolve().parent / "hackback_contract.json").read_text())
MARK = CONTRACT["markers"]
FILES = CONTRACT["files"]
CAUSE = CONTRACT["causes"]

CPUS = {"atomic": CPUTypes.ATOMIC, "timing": CPUTypes.TIMING, "o3": CPUTypes.O3, "kvm": CPUTypes.KVM}
PANIC_MARKS = ("Kernel panic - not syncing", "Kernel panic -")
TICKS_PER_SECOND = 10**12


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hackback_fs.py")
    ap.add_argument("mode", choices=("boot", "restore"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--kernel-args", required=True, help="the whole kernel command line")
    ap.add_argument("--memory", default="2GiB")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--cpu", choices=sorted(CPUS), default="atomic")
    ap.add_argument("--caches", choices=("none", "l1", "l1l2"), default="none")
    ap.add_argument("--l1d", default=CONTRACT["cache_defaults"]["l1d"])
    ap.add_argument("--l1i", default=CONTRACT["cache_defaults"]["l1i"])
    ap.add_argument("--l2", default=CONTRACT["cache_defaults"]["l2"])
    ap.add_argument("--kvm-perf", action="store_true", help="use perf counters on KVM cores (needs a host PMU)")
    ap.add_argument("--checkpoint-dir", help="boot (and a restore saving a child): where cpt.<tick> is written")
    ap.add_argument("--checkpoint", help="restore: the cpt.<tick> directory")
    ap.add_argument("--script", help="restore: the file the guest reads with `m5 readfile`")
    ap.add_argument("--slice-seconds", type=float, default=0.05, help="simulated seconds between progress checks")
    ap.add_argument("--progress-every", type=float, default=10.0, help="host seconds between progress lines")
    ap.add_argument("--max-sim-seconds", type=float, default=0.0, help="0: no limit")
    ap.add_argument("--max-wall-seconds", type=float, default=0.0, help="0: no limit")
    args = ap.parse_args()
    if args.mode == "boot" and not args.checkpoint_dir:
        ap.error("boot needs --checkpoint-dir")
    if args.mode == "restore" and not (args.checkpoint and args.script):
        ap.error("restore needs --checkpoint and --script")
    return args


def cache_hierarchy(args: argparse.Namespace):
    if args.caches == "l1":
        return PrivateL1CacheHierarchy(l1d_size=args.l1d, l1i_size=args.l1i)
    if args.caches == "l1l2":
        return PrivateL1PrivateL2CacheHierarchy(l1d_size=args.l1d, l1i_size=args.l1i, l2_size=args.l2)
    return NoCache()


def board_for(args: argparse.Namespace) -> X86Board:
    processor = SimpleProcessor(cpu_type=CPUS[args.cpu], num_cores=args.cores, isa=ISA.X86)
    if args.cpu == "kvm" and not args.kvm_perf:
        for core in processor.get_cores():
            core.core.usePerf = False  # hosts (and VMs) without a usable PMU
    board = X86Board(
        clk_freq="3GHz",
        processor=processor,
        memory=SingleChannelDDR3_1600(size=args.memory),
        cache_hierarchy=cache_hierarchy(args),
    )
    workload = dict(
        kernel=KernelResource(local_path=args.kernel),
        disk_image=DiskImageResource(local_path=args.disk),
        kernel_args=args.kernel_args.split(),
    )
    if args.mode == "restore":
        workload.update(readfile=args.script, checkpoint=Path(args.checkpoint))
    # A boot hands the guest no readfile: `m5 readfile` there gives 0 bytes.
    board.set_kernel_disk_workload(**workload)
    return board


class Console:
    """The guest's serial console as gem5 writes it (board.pc.com_1.device)."""

    def __init__(self, outdir: str) -> None:
        self.path = Path(outdir) / FILES["console"]
        self.offset = 0
        self.last_line = ""
        self.panic = ""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        for line in data.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line:
                self.last_line = line[:160]
            if not self.panic and any(mark in line for mark in PANIC_MARKS):
                self.panic = line[:200]


STARTED = time.monotonic()  # when gem5 handed this script control (its own start-up is before)


def main() -> int:
    args = parse()
    outdir = m5.options.outdir
    board = board_for(args)
    phases = {"board_seconds": round(time.monotonic() - STARTED, 2)}
    result = {"mode": args.mode, "cpu": args.cpu, "caches": args.caches, "memory": args.memory, "cores": args.cores}
    events = []

    def record(kind):
        def handler():
            while True:
                events.append(kind)
                if kind == CAUSE["checkpoint"] and args.checkpoint_dir:
                    tick = m5.curTick()
                    target = Path(args.checkpoint_dir) / f"cpt.{tick}"
                    print(f"{MARK['checkpoint']} saving {target}", flush=True)
                    simulator.save_checkpoint(target)
                    result["checkpoint"] = target.name
                yield True  # every ending is ours to judge; never continue past it

        return handler()

    # Region of interest (m5 workbegin / workend): gem5's default handlers reset
    # the stats at workbegin (what came before is lost) and dump at workend.
    # Here each dumps first, then resets: the dump made at workbegin holds the
    # run up to the ROI, the one at workend the ROI alone, gem5's own final dump
    # at exit what came after; the result says which dump is which.
    work_items = []
    dumps = [0]

    def work_item(kind):
        def handler():
            while True:
                m5.stats.dump()
                dumps[0] += 1
                m5.stats.reset()
                work_items.append({"kind": kind, "tick": m5.curTick(), "dump": dumps[0]})
                sim_s = (m5.curTick() - start_tick) / TICKS_PER_SECOND
                progress = {"sim": sim_s, "host": round(time.monotonic() - wall_start, 1), "console": f"m5 {kind}"}
                print(f"{MARK['progress']} {json.dumps(progress)}", flush=True)
                yield False  # go on simulating

        return handler()

    slice_ticks = int(args.slice_seconds * TICKS_PER_SECOND)
    simulator = Simulator(
        board=board,
        max_ticks=slice_ticks,  # per run() call: we simulate in slices
        on_exit_event={
            ExitEvent.CHECKPOINT: record(CAUSE["checkpoint"]),
            ExitEvent.EXIT: record(CAUSE["exit"]),
            ExitEvent.FAIL: record(CAUSE["fail"]),
            ExitEvent.KERNEL_PANIC: record(CAUSE["kernel_panic"]),
            ExitEvent.KERNEL_OOPS: record(CAUSE["kernel_oops"]),
            ExitEvent.MAX_TICK: record(CAUSE["slice"]),
            ExitEvent.USER_INTERRUPT: record(CAUSE["interrupted"]),
            ExitEvent.WORKBEGIN: work_item("workbegin"),
            ExitEvent.WORKEND: work_item("workend"),
        },
    )
    console = Console(outdir)
    # A restore starts at the checkpoint's tick; report time simulated by this run.
    start_tick = int(Path(args.checkpoint).name.split(".")[-1]) if args.mode == "restore" else 0
    wall_start = time.monotonic()
    # Instantiate first (for a restore this loads the checkpoint: the memory
    # image is one gzip'd file gem5 inflates whole), so its cost is seen apart.
    simulator._instantiate()
    phases["instantiate_seconds"] = round(time.monotonic() - wall_start, 2)
    next_progress = wall_start + args.progress_every
    cause = ""
    while True:
        simulator.run()
        kind = events[-1] if events else CAUSE["unknown"]
        now = time.monotonic()
        console.poll()
        sim_s = (m5.curTick() - start_tick) / TICKS_PER_SECOND
        if kind != CAUSE["slice"]:
            cause = kind
            break
        if console.panic:
            cause = CAUSE["kernel_panic"]
            break
        if args.max_sim_seconds and sim_s >= args.max_sim_seconds:
            cause = CAUSE["max_sim_seconds"]
            break
        if args.max_wall_seconds and now - wall_start >= args.max_wall_seconds:
            cause = CAUSE["max_wall_seconds"]
            break
        if now >= next_progress:
            next_progress = now + args.progress_every
            progress = {"sim": sim_s, "host": round(now - wall_start, 1), "console": console.last_line}
            print(f"{MARK['progress']} {json.dumps(progress)}", flush=True)
    console.poll()
    expected = CONTRACT["expected"]["restore_saving" if args.mode == "restore" and args.checkpoint_dir else args.mode]
    result.update(
        cause=cause,
        expected=expected,
        ok=cause == expected,
        gem5_exit_cause=simulator.get_last_exit_event_cause(),
        final_tick=m5.curTick(),
        start_tick=start_tick,
        sim_seconds=(m5.curTick() - start_tick) / TICKS_PER_SECOND,
        host_seconds=round(time.monotonic() - wall_start, 2),
        phases={**phases, "simulate_seconds": round(time.monotonic() - wall_start - phases["instantiate_seconds"], 2)},
        console_last_line=console.last_line,
        panic_line=console.panic,
        work_items=work_items,
        stats_dumps=dumps[0] + 1,  # and gem5's own at exit
    )
    with open(os.path.join(outdir, FILES["result_tmp"]), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    os.replace(os.path.join(outdir, FILES["result_tmp"]), os.path.join(outdir, FILES["result"]))
    print(f"{MARK['result']} {json.dumps(result, sort_keys=True)}", flush=True)
    return 0 if result["ok"] else CONTRACT["exit_status"]["wrong_ending"]


if __name__ == "__m5_main__":
    sys.exit(main())
