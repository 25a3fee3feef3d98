# hackback's gem5 run script (gem5 v24 standard library, X86Board).
#
#   gem5.opt --outdir=OUT hackback_fs.py boot    --kernel K --disk D --kernel-args ARGS --checkpoint-dir OUT ...
#   gem5.opt --outdir=OUT hackback_fs.py restore --kernel K --disk D --kernel-args ARGS --checkpoint CPT --script S ...
#
# boot:    boot Linux; when the guest runs `m5 checkpoint`, save cpt.<tick> into
#          --checkpoint-dir and stop (gem5's default handler would continue).
# restore: restore CPT with the CPU model and caches asked for; the guest reads
#          --script through `m5 readfile`; stop at the guest's `m5 exit`. With
#          --checkpoint-dir, the guest's next `m5 checkpoint` (hackback-checkpoint
#          in the script) saves a child cpt.<tick> there and ends the run; with
#          --checkpoint-at workbegin the child is saved at the guest's first
#          `m5 workbegin` instead (a benchmark's own region of interest), and with
#          --checkpoints-at N1,N2,.. one is saved after each count of committed
#          instructions (sample checkpoints), the run ending at the last.
#          With --switch-from FAST, the restore starts on FAST cores and switches
#          to --cpu at the guest's `m5 workbegin` (or after core 0 commits
#          --switch-after-insts instructions), runs --warmup-insts more on the
#          new cores, and measures from there to `m5 workend`, to the end, or for
#          exactly --measure-insts instructions, then goes back to FAST. With
#          --in-roi (a restore of a checkpoint saved at workbegin) the measured
#          part starts at once. --simpoint-interval N writes gem5's basic-block
#          vectors (simpoint.bb.gz), and --stop-at-workend ends the run at the
#          ROI's end. The result's roi_dump names the stats dump that holds the
#          measured part.
# Either way the run is simulated in slices so that progress is printed, the
# console is watched for a kernel panic, and limits are enforced. The result
# goes to OUT/hackback-result.json; the exit status is 0 only for the expected
# ending. hackback runs this inside its env image; a researcher can run it (or
# a copy of it) the same way, see the README ("Your own gem5 config").
#
# The pieces, each small and named (after gem5's own exit_handler.py): the
# arguments (parse); the board (Switchable, processor_for, cache_hierarchy,
# board_for); the console watch (Console); the measurement, a state machine with
# one method per event (Measurement); the run, one handler per gem5 exit event
# and the slice loop (Run); the result (Run.result). gem5 APIs used that are not
# its public stdlib interface are listed in PRIVATE, with why.
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
from gem5.components.cachehierarchies.classic.private_l1_private_l2_walk_cache_hierarchy import (
    PrivateL1PrivateL2WalkCacheHierarchy,
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

# gem5 internals this script leans on, and why (checked against v24.0.0.1):
PRIVATE = {
    "Simulator._instantiate": "instantiate (and load the checkpoint) before the first run(), so its cost is "
                              "timed apart and instruction stops can be scheduled on the restored cores",
    "SwitchableProcessor._all_cores": "every core of both sets, to turn off perf counters on KVM cores",
    "gem5.utils.requires.get_runtime_coherence_protocol": "patched on a gem5 built without Ruby (see below)",
    "BaseCPU.scheduleInstStopAnyThread / getCurrentInstCount": "SimObject methods (pybind), not stdlib API: "
                                                               "instruction-count stops and counts on a core",
}

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
# The presets with an L2. l1l2walk is l1l2 with an 8 KiB cache per page-table walker in
# front of the L2: l1l2's walkers read the memory bus past the caches, so a walk costs a
# DRAM read unless a dirty page-table line happens to be snooped, and an ROI's CPI
# depends on that history.
WITH_L2 = {"l1l2": PrivateL1PrivateL2CacheHierarchy, "l1l2walk": PrivateL1PrivateL2WalkCacheHierarchy}
PANIC_MARKS = ("Kernel panic - not syncing", "Kernel panic -")
TICKS_PER_SECOND = 10**12
STARTED = time.monotonic()  # when gem5 handed this script control (its own start-up is before)


# ---------------------------------------------------------------- arguments


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hackback_fs.py")
    ap.add_argument("mode", choices=("boot", "restore"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--kernel-args", required=True, help="the whole kernel command line")
    ap.add_argument("--memory", default="2GiB")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--cpu", choices=sorted(CPUS), default="atomic")
    ap.add_argument("--caches", choices=("none", "l1", *WITH_L2), default="none")
    ap.add_argument("--l1d", default=CONTRACT["cache_defaults"]["l1d"])
    ap.add_argument("--l1i", default=CONTRACT["cache_defaults"]["l1i"])
    ap.add_argument("--l2", default=CONTRACT["cache_defaults"]["l2"])
    ap.add_argument("--switch-from", choices=sorted(CPUS), help="restore: start on this CPU, switch to --cpu")
    ap.add_argument("--switch-after-insts", type=int, default=0,
                    help="with --switch-from: switch after core 0 commits this many instructions (0: at m5 workbegin)")
    ap.add_argument("--warmup-insts", type=int, default=0,
                    help="instructions on the measured cores before the measured part's stats start")
    ap.add_argument("--measure-insts", type=int, default=0, help="measure exactly this many instructions, then stop")
    ap.add_argument("--in-roi", action="store_true", help="restore: the checkpoint was saved at the ROI's workbegin")
    ap.add_argument("--simpoint-interval", type=int, default=0, help="write basic-block vectors of this interval")
    ap.add_argument("--stop-at-workend", action="store_true",
                    help="end the run at the guest's first m5 workend (with --checkpoints-at: after the last checkpoint)")
    ap.add_argument("--kvm-perf", action="store_true", help="use perf counters on KVM cores (needs a host PMU)")
    ap.add_argument("--checkpoint-dir", help="boot (and a restore saving a child): where cpt.<tick> is written")
    ap.add_argument("--checkpoint-at", choices=("guest", "workbegin"), default="guest",
                    help="restore with --checkpoint-dir: save at the guest's m5 checkpoint, or at its first workbegin")
    ap.add_argument("--checkpoints-at", default="", help="restore with --checkpoint-dir: after these instruction counts")
    ap.add_argument("--checkpoint", help="restore: the cpt.<tick> directory")
    ap.add_argument("--script", help="restore: the file the guest reads with `m5 readfile`")
    ap.add_argument("--slice-seconds", type=float, default=0.05, help="simulated seconds between progress checks")
    ap.add_argument("--progress-every", type=float, default=10.0, help="host seconds between progress lines")
    ap.add_argument("--max-sim-seconds", type=float, default=0.0, help="0: no limit")
    ap.add_argument("--max-wall-seconds", type=float, default=0.0, help="0: no limit")
    args = ap.parse_args()
    args.checkpoints_at = [int(n) for n in args.checkpoints_at.split(",") if n]
    _check(ap, args)
    return args


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.mode == "boot" and not args.checkpoint_dir:
        ap.error("boot needs --checkpoint-dir")
    if args.mode == "restore" and not (args.checkpoint and args.script):
        ap.error("restore needs --checkpoint and --script")
    if args.switch_from and (args.mode != "restore" or args.switch_from == args.cpu or args.in_roi):
        ap.error("--switch-from is for a restore not in the ROI, with a CPU other than --cpu")
    if args.switch_after_insts and not args.switch_from:
        ap.error("--switch-after-insts needs --switch-from")
    if (args.warmup_insts or args.measure_insts) and not (args.switch_from or args.in_roi):
        ap.error("--warmup-insts and --measure-insts need --switch-from or --in-roi")
    if args.checkpoints_at and (not args.checkpoint_dir or args.checkpoints_at != sorted(set(args.checkpoints_at))
                                or args.checkpoints_at[0] <= 0):
        ap.error("--checkpoints-at takes increasing counts > 0, with --checkpoint-dir")
    if args.simpoint_interval and (args.cpu != "atomic" or args.switch_from):
        ap.error("--simpoint-interval profiles on the atomic CPU alone")


# ---------------------------------------------------------------- the board


class Switchable(SwitchableProcessor):
    """Two sets of cores, one running at a time. The set a run starts on is keyed
    "cores", a plain SimpleProcessor's name, so its state is at
    board.processor.cores(.N) as in every checkpoint hackback takes: gem5
    silently skips a section it cannot find, and under gem5's own names
    (start/switch) a plain checkpoint loads with no CPU state and hangs. The
    other set is "switch"; gem5 moves the caches, interrupts and thread state
    over (BaseCPU::takeOverFrom)."""

    def __init__(self, start: str, other: str, num_cores: int) -> None:
        self._cpu_of = {"cores": start, "switch": other}
        self._modes = {key: get_mem_mode(CPUS[cpu]) for key, cpu in self._cpu_of.items()}
        cores = {key: [SimpleCore(cpu_type=CPUS[cpu], core_id=i, isa=ISA.X86) for i in range(num_cores)]
                 for key, cpu in self._cpu_of.items()}
        if start in ("atomic", "timing") and other == "o3":
            # Functional warming trains the branch predictor too, as SMARTS' does: the simple
            # cores drive the o3 cores' own predictors (BaseSimpleCPU takes one), so o3 starts
            # on a trained predictor, not an empty one (gem5 hands no predictor state over).
            for fast, detailed in zip(cores["cores"], cores["switch"]):
                fast.core.branchPred = detailed.core.branchPred
        super().__init__(switchable_cores=cores, starting_cores="cores")
        self._active = "cores"  # underscored: a SimObject takes no other new attributes

    def incorporate_processor(self, board) -> None:
        super().incorporate_processor(board)
        board.set_mem_mode(self._modes["cores"])  # m5.switchCpus changes it at the switch

    def switch_to(self, key: str) -> None:
        if key != self._active:
            self.switch_to_processor(key)
            self._active = key

    def active_cpu(self) -> str:
        return self._cpu_of[self._active]


def processor_for(args: argparse.Namespace):
    if args.switch_from:
        processor = Switchable(args.switch_from, args.cpu, args.cores)
    elif args.in_roi and args.cpu != "atomic":
        processor = Switchable(args.cpu, "atomic", args.cores)  # after the ROI, the rest runs fast
    else:
        processor = SimpleProcessor(cpu_type=CPUS[args.cpu], num_cores=args.cores, isa=ISA.X86)
    cores = list(processor._all_cores()) if isinstance(processor, Switchable) else processor.get_cores()
    for core in cores:
        if core.is_kvm_core() and not args.kvm_perf:
            core.core.usePerf = False  # hosts (and VMs) without a usable PMU
        if args.simpoint_interval:
            core.core.addSimPointProbe(args.simpoint_interval)  # writes simpoint.bb.gz into the outdir
    return processor


def cache_hierarchy(args: argparse.Namespace):
    if args.caches == "l1":
        return PrivateL1CacheHierarchy(l1d_size=args.l1d, l1i_size=args.l1i)
    if args.caches in WITH_L2:
        return WITH_L2[args.caches](l1d_size=args.l1d, l1i_size=args.l1i, l2_size=args.l2)
    return NoCache()


def board_for(args: argparse.Namespace, processor) -> X86Board:
    board = X86Board(clk_freq="3GHz", processor=processor, memory=SingleChannelDDR3_1600(size=args.memory),
                     cache_hierarchy=cache_hierarchy(args))
    workload = dict(kernel=KernelResource(local_path=args.kernel), disk_image=DiskImageResource(local_path=args.disk),
                    kernel_args=args.kernel_args.split())
    if args.mode == "restore":
        workload.update(readfile=args.script, checkpoint=Path(args.checkpoint))
    # A boot hands the guest no readfile: `m5 readfile` there gives 0 bytes.
    board.set_kernel_disk_workload(**workload)
    return board


# ---------------------------------------------------------------- the console


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


# ---------------------------------------------------------------- the measurement


class Measurement:
    """Which part of a run is measured, and when its CPUs switch: one method per event.

    plain:    no switching; every marker dumps the stats; the measured part is
              the first workbegin..workend.
    fast:     on the fast cores until the switch (workbegin, or a count).
    warming:  on the measured cores for --warmup-insts (a run in the ROI starts here).
    measuring: the measured part; it ends at workend, after --measure-insts, or
              at the run's end.
    over:     measured (or its chance gone): the rest runs on the fast cores.

    Each dump is made, then the stats reset, so a dump holds only its own part;
    gem5's own final dump at exit holds what came after the last."""

    def __init__(self, run: "Run") -> None:
        args = run.args
        self.run, self.args = run, args
        self.dumps = 0
        self.last_dump_tick = -1
        self.roi_dump = None  # 1-based: the measured part's dump
        self.switch = None
        self.measuring = False  # the plain state's ROI is open
        if args.switch_from:
            self.state = "fast"
        elif args.in_roi:
            self.state = "warming" if args.warmup_insts else "measuring"
        else:
            self.state = "plain"

    def started(self) -> None:
        """After instantiation: the instruction counts a state waits for."""
        if self.state == "fast" and self.args.switch_after_insts:  # counted from the restore, on core 0
            self.run.stop_after(self.args.switch_after_insts)
        elif self.state == "warming":
            self.run.stop_after(self.args.warmup_insts)
        elif self.state == "measuring":
            self._measure_from_here()

    def workbegin(self) -> None:
        if self.state == "plain":
            self._dump("workbegin")
            self.measuring = self.measuring or self.roi_dump is None
        elif self.state == "fast" and not self.args.switch_after_insts:
            self._dump("workbegin")
            self._switch()
        else:
            self.run.note("workbegin")

    def workend(self) -> None:
        if self.state == "plain":
            self._dump("workend")
            if self.measuring and self.roi_dump is None:
                self.roi_dump, self.measuring = self.dumps, False
        elif self.state in ("fast", "warming", "measuring"):
            self._dump("workend")
            self._over(measured=self.state == "measuring")
        else:
            self.run.note("workend")

    def insts_reached(self) -> bool:
        """An instruction count this measurement waited for; True: the run ends here."""
        if self.state == "fast":
            self._dump("switch")
            self._switch()
        elif self.state == "warming":
            self._dump("warmup-end")
            self.state = "measuring"
            self._measure_from_here()
        elif self.state == "measuring":  # --measure-insts done: exactly that many were measured
            self._dump("measure-end")
            self._over(measured=True)
            return True
        return False

    def ended(self) -> None:
        """The run ended: a part still measured is gem5's own final dump."""
        if self.state == "measuring" and self.roi_dump is None and self.last_dump_tick != m5.curTick():
            self.roi_dump = self.dumps + 1

    def _switch(self) -> None:
        self.run.switch_to("switch")
        self.switch = {"tick": m5.curTick(), "host_seconds": round(time.monotonic() - self.run.wall_start, 2)}
        if self.args.warmup_insts:
            self.state = "warming"
            self.run.stop_after(self.args.warmup_insts)
        else:
            self.state = "measuring"
            self._measure_from_here()

    def _measure_from_here(self) -> None:
        if self.args.measure_insts:
            self.run.stop_after(self.args.measure_insts)

    def _over(self, measured: bool) -> None:
        if measured:
            self.roi_dump = self.dumps
        self.state = "over"
        self.run.switch_to("switch" if self.args.in_roi else "cores")  # the rest of the script runs fast again

    def _dump(self, kind: str) -> None:
        m5.stats.dump()
        self.dumps += 1
        self.last_dump_tick = m5.curTick()
        m5.stats.reset()
        self.run.note(kind, self.dumps)


# ---------------------------------------------------------------- the run


def each(handle):
    """A gem5 exit-event generator from a function: True ends run(), False goes on."""
    while True:
        yield handle()


class Run:
    """One gem5 run: a handler per exit event, the slice loop, the result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.outdir = m5.options.outdir
        self.processor = processor_for(args)
        self.board = board_for(args, self.processor)
        self.phases = {"board_seconds": round(time.monotonic() - STARTED, 2)}
        self.cause = ""
        self.work_items = []
        self.saved = []  # the checkpoints saved: {"cpt", "insts"}
        self.pending = list(args.checkpoints_at)  # instruction counts still to save a checkpoint at
        self.measurement = Measurement(self)
        self.console = Console(self.outdir)
        # A restore starts at the checkpoint's tick; report time simulated by this run.
        self.start_tick = int(Path(args.checkpoint).name.split(".")[-1]) if args.mode == "restore" else 0
        self.wall_start = time.monotonic()
        self.simulator = Simulator(board=self.board, max_ticks=int(args.slice_seconds * TICKS_PER_SECOND),
                                   on_exit_event=self.handlers())

    def handlers(self) -> dict:
        ending = {ExitEvent.EXIT: CAUSE["exit"], ExitEvent.FAIL: CAUSE["fail"], ExitEvent.KERNEL_PANIC: CAUSE["kernel_panic"],
                  ExitEvent.KERNEL_OOPS: CAUSE["kernel_oops"], ExitEvent.USER_INTERRUPT: CAUSE["interrupted"]}
        out = {event: each(lambda cause=cause: self.end(cause)) for event, cause in ending.items()}
        out.update({ExitEvent.CHECKPOINT: each(self.on_checkpoint), ExitEvent.MAX_TICK: each(self.on_slice),
                    ExitEvent.WORKBEGIN: each(self.on_workbegin), ExitEvent.WORKEND: each(self.on_workend),
                    ExitEvent.MAX_INSTS: each(self.on_insts)})
        return out

    # -- one handler per event (True: this run() call returns)

    def end(self, cause: str) -> bool:
        self.cause = cause
        return True

    def on_slice(self) -> bool:
        return True  # one slice simulated: the loop looks at the console and the limits

    def on_checkpoint(self) -> bool:
        if self.args.checkpoint_dir and self.args.checkpoint_at == "guest" and not self.args.checkpoints_at:
            self.save()
        return self.end(CAUSE["checkpoint"])  # every ending is ours to judge; never continue past it

    def on_workbegin(self) -> bool:
        if self.args.checkpoint_dir and self.args.checkpoint_at == "workbegin":
            self.note("workbegin")
            self.save()
            return self.end(CAUSE["checkpoint"])
        self.measurement.workbegin()
        return False

    def on_workend(self) -> bool:
        self.measurement.workend()
        return self.end(CAUSE["roi_end"]) if self.args.stop_at_workend else False

    def on_insts(self) -> bool:
        if self.pending:  # a sample checkpoint's count
            self.save()
            done = self.pending.pop(0)
            if self.pending:
                self.stop_after(self.pending[0] - done)
                return False
            # The last one: with --stop-at-workend the run goes on to the ROI's end (its count checks the profile's).
            return False if self.args.stop_at_workend else self.end(CAUSE["checkpoint"])
        return self.end(CAUSE["measured"]) if self.measurement.insts_reached() else False

    # -- what the handlers do

    def save(self) -> None:
        target = Path(self.args.checkpoint_dir) / f"cpt.{m5.curTick()}"
        if isinstance(self.processor, Switchable):
            # Back on the starting cores, keyed "cores": the child has its thread
            # state where every restore (plain or switching) looks for it.
            self.processor.switch_to("cores")
        print(f"{MARK['checkpoint']} saving {target}", flush=True)
        self.simulator.save_checkpoint(target)
        self.saved.append({"cpt": target.name, "insts": self.insts()})

    def switch_to(self, key: str) -> None:
        if isinstance(self.processor, Switchable):
            self.processor.switch_to(key)

    def stop_after(self, insts: int) -> None:
        """A MAX_INSTS exit once core 0 has committed `insts` more instructions."""
        self.processor.get_cores()[0].core.scheduleInstStopAnyThread(insts)

    def insts(self) -> int:
        """Core 0's committed instructions since this run started (on the cores running now)."""
        return int(self.processor.get_cores()[0].core.getCurrentInstCount(0))

    def cpu(self) -> str:
        return self.processor.active_cpu() if isinstance(self.processor, Switchable) else self.args.cpu

    def note(self, kind: str, dump=None) -> None:
        """A work item, dumped (its dump number) or only noted; a progress line for a dump."""
        self.work_items.append({"kind": kind, "tick": m5.curTick(), "dump": dump, "cpu": self.cpu(), "insts": self.insts()})
        if dump is not None:
            self.progress(f"m5 {kind} ({self.cpu()})")

    def progress(self, console: str) -> None:
        sim = (m5.curTick() - self.start_tick) / TICKS_PER_SECOND
        line = {"sim": sim, "host": round(time.monotonic() - self.wall_start, 1), "console": console}
        print(f"{MARK['progress']} {json.dumps(line)}", flush=True)

    # -- the loop

    def simulate(self) -> None:
        # Instantiate first (for a restore this loads the checkpoint: the memory
        # image is one gzip'd file gem5 inflates whole), so its cost is seen apart.
        self.simulator._instantiate()
        self.phases["instantiate_seconds"] = round(time.monotonic() - self.wall_start, 2)
        self.measurement.started()
        if self.pending:
            self.stop_after(self.pending[0])
        next_progress = self.wall_start + self.args.progress_every
        while True:
            self.simulator.run()
            self.console.poll()
            now, sim = time.monotonic(), (m5.curTick() - self.start_tick) / TICKS_PER_SECOND
            if self.cause:
                break
            if self.console.panic:
                self.cause = CAUSE["kernel_panic"]
                break
            if self.args.max_sim_seconds and sim >= self.args.max_sim_seconds:
                self.cause = CAUSE["max_sim_seconds"]
                break
            if self.args.max_wall_seconds and now - self.wall_start >= self.args.max_wall_seconds:
                self.cause = CAUSE["max_wall_seconds"]
                break
            if now >= next_progress:
                next_progress = now + self.args.progress_every
                self.progress(self.console.last_line)
        self.console.poll()
        self.measurement.ended()

    # -- the result

    def expected(self) -> str:
        a = self.args
        if a.mode == "boot":
            return CONTRACT["expected"]["boot"]
        if a.checkpoint_dir and not (a.checkpoints_at and a.stop_at_workend):
            return CONTRACT["expected"]["restore_saving"]
        return CONTRACT["expected"]["restore_profile" if a.stop_at_workend else
                                     "restore_sample" if a.measure_insts else "restore"]

    def ok(self, cause: str) -> bool:
        # A run that should save checkpoints and ends by the guest's m5 checkpoint saved none: not a success.
        return cause == self.expected() and (not self.args.checkpoint_dir or (bool(self.saved) and not self.pending))

    def final_cause(self) -> str:
        m = self.measurement
        if self.args.switch_from and self.cause in (CAUSE["exit"], CAUSE["roi_end"]) and m.roi_dump is None:
            # All of it on the fast CPU, or the warm-up (or switch count) outlasted the
            # region of interest: no measured part, and stats that would mislead.
            return CAUSE["no_switch"] if m.switch is None else CAUSE["no_measure"]
        return self.cause

    def result(self) -> dict:
        a, m, cause = self.args, self.measurement, self.final_cause()
        elapsed = round(time.monotonic() - self.wall_start, 2)
        switch = m.switch and {**m.switch, "from": a.switch_from, "to": a.cpu, "after_insts": a.switch_after_insts,
                               "warmup_insts": a.warmup_insts}
        result = {
            "mode": a.mode, "cpu": a.cpu, "caches": a.caches, "memory": a.memory, "cores": a.cores,
            "cause": cause, "expected": self.expected(), "ok": self.ok(cause),
            "gem5_exit_cause": self.simulator.get_last_exit_event_cause(),
            "final_tick": m5.curTick(), "start_tick": self.start_tick,
            "sim_seconds": (m5.curTick() - self.start_tick) / TICKS_PER_SECOND, "host_seconds": elapsed,
            "phases": {**self.phases, "simulate_seconds": round(elapsed - self.phases["instantiate_seconds"], 2)},
            "console_last_line": self.console.last_line, "panic_line": self.console.panic,
            "work_items": self.work_items,
            # and gem5's own at exit, unless the run ended in the tick of a dump (gem5 dumps once a tick)
            "stats_dumps": m.dumps + (m.last_dump_tick != m5.curTick()),
            "roi_dump": m.roi_dump,  # 1-based; None: no measured part
            "cpu_at_end": self.cpu(), "switch": switch, "checkpoints": self.saved,
        }
        result["checkpoint"] = self.saved[-1]["cpt"] if self.saved else None  # the last one saved
        return result


def write_result(outdir: str, result: dict) -> None:
    with open(os.path.join(outdir, FILES["result_tmp"]), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    os.replace(os.path.join(outdir, FILES["result_tmp"]), os.path.join(outdir, FILES["result"]))
    print(f"{MARK['result']} {json.dumps(result, sort_keys=True)}", flush=True)


def main() -> int:
    run = Run(parse())
    run.simulate()
    result = run.result()
    write_result(run.outdir, result)
    return 0 if result["ok"] else CONTRACT["exit_status"]["wrong_ending"]


if __name__ == "__m5_main__":
    sys.exit(main())
