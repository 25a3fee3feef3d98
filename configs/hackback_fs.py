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
#          With --switch-from FAST, the restore starts on FAST cores and switches
#          to --cpu at the guest's `m5 workbegin` (or after core 0 commits
#          --switch-after-insts instructions), runs --warmup-insts more on the
#          new cores, and measures from there to `m5 workend` (or the end), then
#          goes back to FAST: the result's roi_dump names the stats dump that
#          holds the measured part.
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
from gem5.components.processors.cpu_types import get_mem_mode
from gem5.components.processors.simple_core import SimpleCore
from gem5.components.processors.simple_processor import SimpleProcessor
from gem5.components.processors.switchable_processor import SwitchableProcessor
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
    ap.add_argument("--switch-from", choices=sorted(CPUS), help="restore: start on this CPU, switch to --cpu")
    ap.add_argument("--switch-after-insts", type=int, default=0,
                    help="with --switch-from: switch after core 0 commits this many instructions (0: at m5 workbegin)")
    ap.add_argument("--warmup-insts", type=int, default=0,
                    help="with --switch-from: instructions on the new cores before the measured part's stats start")
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
    if args.switch_from and (args.mode != "restore" or args.switch_from == args.cpu):
        ap.error("--switch-from is for a restore, with a CPU other than --cpu")
    if (args.switch_after_insts or args.warmup_insts) and not args.switch_from:
        ap.error("--switch-after-insts and --warmup-insts need --switch-from")
    return args


class FastThenMeasured(SwitchableProcessor):
    """Cores that start on a fast CPU and switch to the measured one.

    The starting cores are keyed "cores", a plain SimpleProcessor's name, so
    their state is at board.processor.cores(.N) as in every checkpoint hackback
    takes: gem5 silently skips a section it cannot find, and under gem5's own
    names (start/switch) a plain checkpoint loads with no CPU state and hangs.
    The measured cores are "switch"; gem5 moves the caches, interrupts and
    thread state over (BaseCPU::takeOverFrom)."""

    def __init__(self, start: str, measured: str, num_cores: int) -> None:
        self._modes = {"cores": get_mem_mode(CPUS[start]), "switch": get_mem_mode(CPUS[measured])}
        self._cpu_of = {"cores": start, "switch": measured}
        cores = {key: [SimpleCore(cpu_type=CPUS[cpu], core_id=i, isa=ISA.X86) for i in range(num_cores)]
                 for key, cpu in self._cpu_of.items()}
        super().__init__(switchable_cores=cores, starting_cores="cores")
        self._active = "cores"

    def incorporate_processor(self, board) -> None:
        super().incorporate_processor(board)
        board.set_mem_mode(self._modes["cores"])  # m5.switchCpus changes it at the switch

    def switch_to(self, key: str) -> None:
        if key != self._active:
            self.switch_to_processor(key)
            self._active = key

    def active_cpu(self) -> str:
        return self._cpu_of[self._active]

    def switched(self) -> bool:
        return self._active == "switch"


def processor_for(args: argparse.Namespace):
    if args.switch_from:
        processor = FastThenMeasured(args.switch_from, args.cpu, args.cores)
    else:
        processor = SimpleProcessor(cpu_type=CPUS[args.cpu], num_cores=args.cores, isa=ISA.X86)
    if not args.kvm_perf:
        for core in processor._all_cores() if args.switch_from else processor.get_cores():
            if core.is_kvm_core():
                core.core.usePerf = False  # hosts (and VMs) without a usable PMU
    return processor


def cache_hierarchy(args: argparse.Namespace):
    if args.caches == "l1":
        return PrivateL1CacheHierarchy(l1d_size=args.l1d, l1i_size=args.l1i)
    if args.caches == "l1l2":
        return PrivateL1PrivateL2CacheHierarchy(l1d_size=args.l1d, l1i_size=args.l1i, l2_size=args.l2)
    return NoCache()


def board_for(args: argparse.Namespace) -> X86Board:
    processor = processor_for(args)
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
                    if args.switch_from:
                        # Back on the starting cores, keyed "cores": the child has its thread
                        # state where every restore (plain or switching) looks for it.
                        board.get_processor().switch_to("cores")
                    print(f"{MARK['checkpoint']} saving {target}", flush=True)
                    simulator.save_checkpoint(target)
                    result["checkpoint"] = target.name
                yield True  # every ending is ours to judge; never continue past it

        return handler()

    # Region of interest (m5 workbegin / workend): gem5's default handlers reset
    # the stats at workbegin (what came before is lost) and dump at workend.
    # Here each dumps first, then resets: the dump made at workbegin holds the
    # run up to the ROI, the one at workend the ROI alone, gem5's own final dump
    # at exit what came after; the result says which dump is which. A switching
    # run also dumps at the switch and at the end of its warm-up, and measures
    # from there (to workend, or to the end of the run).
    work_items = []
    dumps = [0]
    measure = {"on": False, "roi_dump": None, "state": "fast" if args.switch_from else "plain", "switch": None}

    def dump_reset(kind):
        m5.stats.dump()
        dumps[0] += 1
        m5.stats.reset()
        cpu = board.get_processor().active_cpu() if args.switch_from else args.cpu
        work_items.append({"kind": kind, "tick": m5.curTick(), "dump": dumps[0], "cpu": cpu})
        sim_s = (m5.curTick() - start_tick) / TICKS_PER_SECOND
        progress = {"sim": sim_s, "host": round(time.monotonic() - wall_start, 1), "console": f"m5 {kind} ({cpu})"}
        print(f"{MARK['progress']} {json.dumps(progress)}", flush=True)

    def switch_and_warm():
        processor = board.get_processor()
        processor.switch_to("switch")
        measure["switch"] = {"tick": m5.curTick(), "host_seconds": round(time.monotonic() - wall_start, 2)}
        if args.warmup_insts:
            measure["state"] = "warming"
            processor.get_cores()[0]._set_inst_stop_any_thread(args.warmup_insts, True)
        else:
            measure["state"], measure["on"] = "measured", True

    def work_item(kind):
        def handler():
            while True:
                if args.switch_from:
                    switching_work_item(kind)
                else:  # a plain run: every marker dumps; the ROI is the first workbegin..workend
                    dump_reset(kind)
                    if kind == "workbegin" and measure["state"] == "plain":
                        measure["on"] = True
                    elif kind == "workend" and measure["on"] and measure["roi_dump"] is None:
                        measure["on"], measure["roi_dump"] = False, dumps[0]
                yield False  # go on simulating

        return handler()

    def switching_work_item(kind):
        """A switching run measures one part: from the switch (and its warm-up) to
        the first workend, or to the end. A workbegin matters only as the switch
        point; a workend before the measured part began ends the chance of one."""
        state = measure["state"]
        if kind == "workbegin":
            if state == "fast" and not args.switch_after_insts:
                dump_reset(kind)
                switch_and_warm()
            else:
                work_items.append({"kind": kind, "tick": m5.curTick(), "dump": None})
        elif state in ("fast", "warming", "measured"):
            dump_reset(kind)
            if measure["on"]:
                measure["roi_dump"] = dumps[0]
            measure["on"], measure["state"] = False, "over"
            board.get_processor().switch_to("cores")  # the rest of the script runs fast again
        else:
            work_items.append({"kind": kind, "tick": m5.curTick(), "dump": None})

    def insts_reached():
        while True:
            if measure["state"] == "fast":  # the instruction count asked for: switch now
                dump_reset("switch")
                switch_and_warm()
            elif measure["state"] == "warming":  # warm-up done: the measured part starts
                dump_reset("warmup-end")
                measure["state"], measure["on"] = "measured", True
            yield False

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
            ExitEvent.MAX_INSTS: insts_reached(),
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
    if args.switch_after_insts:  # counted from the restore, on core 0
        board.get_processor().get_cores()[0]._set_inst_stop_any_thread(args.switch_after_insts, True)
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
    if measure["on"] and measure["roi_dump"] is None and args.switch_from:
        measure["roi_dump"] = dumps[0] + 1  # measured to the end: gem5's final dump
    if args.switch_from and cause == CAUSE["exit"] and measure["roi_dump"] is None:
        # All of it on the fast CPU, or the warm-up (or switch count) outlasted the
        # region of interest: no measured part, and stats that would mislead.
        cause = CAUSE["no_switch"] if measure["switch"] is None else CAUSE["no_measure"]
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
        roi_dump=measure["roi_dump"],  # 1-based; None: no measured part
        cpu_at_end=board.get_processor().active_cpu() if args.switch_from else args.cpu,
        switch=measure["switch"] and {**measure["switch"], "from": args.switch_from, "to": args.cpu,
                                      "after_insts": args.switch_after_insts, "warmup_insts": args.warmup_insts},
    )
    with open(os.path.join(outdir, FILES["result_tmp"]), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    os.replace(os.path.join(outdir, FILES["result_tmp"]), os.path.join(outdir, FILES["result"]))
    print(f"{MARK['result']} {json.dumps(result, sort_keys=True)}", flush=True)
    return 0 if result["ok"] else CONTRACT["exit_status"]["wrong_ending"]


if __name__ == "__m5_main__":
    sys.exit(main())
