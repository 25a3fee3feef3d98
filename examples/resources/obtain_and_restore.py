# A researcher's own gem5 stdlib config that takes hackback's artifacts through
# gem5's resources API, offline: `invoke export` writes the JSON, and
#
#   GEM5_RESOURCE_JSON=<work_dir>/exports/default/resources.json \
#     gem5.opt obtain_and_restore.py --script examples/hello.rcS
#
# obtains the workload (kernel, disk image and checkpoint, and the kernel
# command line they were taken with), restores the checkpoint on an atomic CPU
# and hands the guest the script through m5 readfile. Each resource is obtained
# twice: the second time gem5 finds its copy and checks the md5 the export
# wrote (a wrong one would make it copy the resource again).
import argparse

import m5
import m5.defines
from gem5.components.boards.x86_board import X86Board
from gem5.components.cachehierarchies.classic.no_cache import NoCache
from gem5.components.memory.single_channel import SingleChannelDDR3_1600
from gem5.components.processors.cpu_types import CPUTypes
from gem5.components.processors.simple_processor import SimpleProcessor
from gem5.isas import ISA
from gem5.resources.resource import obtain_resource
from gem5.simulate.simulator import Simulator

# gem5 v24.0 built without Ruby: see configs/hackback_fs.py.
if not str(m5.defines.buildEnv.get("PROTOCOL", "")):
    import gem5.utils.requires as _requires

    _requires.get_runtime_coherence_protocol = lambda: None

ap = argparse.ArgumentParser()
ap.add_argument("--script", required=True)
ap.add_argument("--workload", default="hackback-default-workload")
ap.add_argument("--memory", default="2GiB")  # the checkpoint's: see its manifest (board.memory)
ap.add_argument("--cores", type=int, default=1)  # likewise (board.cores)
args = ap.parse_args()

workload = obtain_resource(args.workload)
for name, resource in workload.get_parameters().items():
    if hasattr(resource, "get_local_path"):
        print(f"obtained {name}: {resource.get_id()} at {resource.get_local_path()}", flush=True)
for name, resource in workload.get_parameters().items():
    if hasattr(resource, "get_id"):  # again: the copy is there now, so gem5 checks its md5
        obtain_resource(resource.get_id()).get_local_path()
workload.set_parameter("readfile", args.script)

board = X86Board(
    clk_freq="3GHz",
    processor=SimpleProcessor(cpu_type=CPUTypes.ATOMIC, num_cores=args.cores, isa=ISA.X86),
    memory=SingleChannelDDR3_1600(size=args.memory),
    cache_hierarchy=NoCache(),
)
board.set_workload(workload)
simulator = Simulator(board=board)
simulator._instantiate()
print(f"restored at tick {m5.curTick()}", flush=True)
simulator.run()  # until the guest's m5 exit (gem5's default handler)
print(f"ended at tick {m5.curTick()}: {simulator.get_last_exit_event_cause()}", flush=True)
