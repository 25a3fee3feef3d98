"""gem5's stats.txt, every dump, and the whole-run and region-of-interest figures."""
from __future__ import annotations

from pathlib import Path

from conftest import result_of
from hackback.services import stats

DUMP = """
---------- Begin Simulation Statistics ----------
simSeconds                                   {sec}                       # Number of seconds simulated (Second)
simInsts                                     {cum}                       # Number of instructions simulated (Count)
board.processor.cores.core.commitStats0.numInsts {insts}                       # Number of instructions committed (Count)
board.processor.cores.core.numCycles         {cycles}                       # Number of cpu cycles simulated (Cycle)
board.cache_hierarchy.l1d-cache-0.overallMissRate::total {miss}   # miss rate for overall accesses (Ratio)
---------- End Simulation Statistics   ----------
"""


def _write(tmp: Path, *blocks: dict[str, object]) -> Path:
    path = tmp / "stats.txt"
    path.write_text("".join(DUMP.format(**b) for b in blocks))
    return path


def test_every_dump_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, dict(sec=0.001, insts=1000, cum=1000, cycles=4000, miss=0.01),
                  dict(sec=0.002, insts=3000, cum=4000, cycles=3000, miss=0.2))
    every = stats.dumps(path)
    assert [d["simInsts"] for d in every] == ["1000", "4000"]
    assert every[1]["board.cache_hierarchy.l1d-cache-0.overallMissRate::total"] == "0.2"
    assert stats.dumps(tmp_path / "missing.txt") == []


def test_the_whole_run_adds_its_dumps_and_the_roi_is_the_workend_dump(tmp_path: Path) -> None:
    path = _write(tmp_path, dict(sec=0.001, insts=1000, cum=1000, cycles=4000, miss=0.01),
                  dict(sec=0.002, insts=3000, cum=4000, cycles=3000, miss=0.2), dict(sec=0.001, insts=500, cum=4500, cycles=1000, miss=0.05))
    every = stats.dumps(path)
    whole = stats.whole_run(every)
    assert whole["insts"] == 4500 and whole["numCycles"] == 8000 and abs(whole["ipc"] - 4500 / 8000) < 1e-12
    assert whole["simInsts"] == 4500  # gem5's own count runs from the start: the last dump's, not a sum
    assert "l1d_miss_rate" not in whole  # a rate does not add up: shown only per dump
    roi = stats.roi_dump(result_of(work_items=[{"kind": "workbegin", "tick": 1, "dump": 1}, {"kind": "workend", "tick": 2, "dump": 2}]))
    assert roi == 1
    fig = stats.figures(every[roi])
    assert fig["insts"] == 3000 and fig["ipc"] == 1.0 and fig["l1d_miss_rate"] == 0.2
    assert stats.roi_dump(result_of()) is None
    assert stats.roi_dump(result_of(work_items=[{"kind": "workend", "tick": 1, "dump": 1}])) is None


def test_a_switching_run_names_its_measured_dump_and_each_part_its_cpu(tmp_path: Path) -> None:
    # atomic until the switch (dump 1), warm-up on o3 (dump 2), measured to the end (gem5's final dump, 3)
    path = _write(tmp_path, dict(sec=0.001, insts=9000, cum=9000, cycles=3000, miss=0.01),
                  dict(sec=0.001, insts=1000, cum=10000, cycles=2000, miss=0.3), dict(sec=0.002, insts=2000, cum=12000, cycles=4000, miss=0.1))
    items = [{"kind": "switch", "tick": 1, "dump": 1, "cpu": "atomic"}, {"kind": "warmup-end", "tick": 2, "dump": 2, "cpu": "o3"}]
    assert stats.roi_dump(result_of(work_items=items, roi_dump=3)) == 2
    begun = [{"kind": "workbegin", "tick": 1, "dump": 1}, {"kind": "workend", "tick": 2, "dump": 2}]
    assert stats.roi_dump(result_of(work_items=begun, roi_dump=None)) is None  # the run script's word wins
    parts = stats.parts(stats.dumps(path), result_of(work_items=items, roi_dump=3, cpu_at_end="o3"))
    assert [(p.ended_by, p.cpu) for p in parts] == [("switch", "atomic"), ("warmup-end", "o3"), ("end", "o3")]
    assert parts[0].core_insts == {"cores.core": 9000.0} and parts[2].figures["insts"] == 2000


def test_missing_stats_are_missing_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "stats.txt"
    path.write_text("---------- Begin Simulation Statistics ----------\nsimInsts 10 # x\n")
    fig = stats.figures(stats.dumps(path)[0])
    assert fig == {"simInsts": 10.0}


def test_a_cache_with_accesses_and_no_misses_has_a_zero_miss_rate_not_a_missing_one() -> None:
    # gem5 prints no overallMissRate when there were no misses (a warmed-up L1D).
    l1d = "board.cache_hierarchy.l1d-cache-0"
    assert stats.figures({f"{l1d}.overallAccesses::total": "15000"})["l1d_miss_rate"] == 0.0
    assert stats.figures({f"{l1d}.overallAccesses::total": "200", f"{l1d}.overallMisses::total": "50"})["l1d_miss_rate"] == 0.25
    assert "l1d_miss_rate" not in stats.figures({"simSeconds": "0.1"})  # no cache: missing


def test_stats_that_cannot_be_trusted_are_named_and_whole_ones_pass(tmp_path: Path) -> None:
    one = dict(sec=0.001, insts=1000, cum=1000, cycles=4000, miss=0.01)
    path = _write(tmp_path, one, one)
    assert stats.problem(path, 2) is None and stats.problem(path, None) is None
    assert stats.problem(path, 3) == "stats.txt holds 2 dump(s), the run script made 3"
    text = path.read_text()
    path.write_text(text[: text.rindex("---------- End")])  # gem5 killed while writing its last dump
    assert stats.problem(path, 2) == "stats.txt is cut short (2 dump(s) begun, 1 complete)"
    assert stats.problem(tmp_path / "none.txt", 1) == "gem5 wrote no stats.txt"
