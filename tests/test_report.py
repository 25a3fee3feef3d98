"""invoke report's table from run directories: figures read from stats.txt, missing ones missing."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import run_info_json
from hackback.steps import report
from hackback.base.errors import UsageError
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest, write_manifest

STATS = """
---------- Begin Simulation Statistics ----------
simSeconds                                   0.001 # x
board.processor.cores.core.commitStats0.numInsts {a} # x
board.processor.cores.core.numCycles         {c} # x
{extra}
---------- End Simulation Statistics   ----------
"""


def _run(work: Path, name: str, script: str, l1d: str, miss: str) -> None:
    d = work / "runs" / name
    d.mkdir(parents=True)
    extra = f"board.cache_hierarchy.l1d-cache-0.overallMissRate::total {miss} # x" if miss else ""
    (d / "stats.txt").write_text(STATS.format(a=1000, c=2000, extra="") + STATS.format(a=300, c=100, extra=extra))
    m = Manifest("runs", name)
    m.set_part("run", {}, {}, run_info_json("default", f"/x/{script}", board={"cpu": "o3", "caches": "l1", "l1d": l1d, "l1i": "32KiB"},
                                            sim_seconds=0.002, host_seconds=3.0, roi={"dump": 2}))
    write_manifest(d, m)


def test_the_report_reads_stats_txt_and_plots_a_sweep(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(work, "r1", "chase.sh", "16KiB", "0.5")
    _run(work, "r2", "chase.sh", "64KiB", "0.1")
    _run(work, "r3", "other.sh", "32KiB", "")
    rep = report.report(Layout(work), report.Selection(), tmp_path / "out")
    rows = {r["run"]: r for r in csv.DictReader((tmp_path / "out" / "runs.csv").open())}
    assert rows["r1"]["insts"] == "1300" and rows["r1"]["roi_insts"] == "300" and rows["r1"]["roi_ipc"] == "3"
    assert rows["r1"]["roi_l1d_miss_rate"] == "0.5" and rows["r3"]["roi_l1d_miss_rate"] == ""  # missing, not 0
    assert {p.name for p in rep.files} >= {"runs.csv", "runs.md", "ipc_by_script.png", "default-chase-o3-l1_vs_l1d.png"}
    only = report.report(Layout(work), report.Selection(script="other"), tmp_path / "out2")
    assert [r["run"] for r in only.rows] == ["r3"]
    with pytest.raises(UsageError) as unknown:
        report.report(Layout(work), report.Selection(checkpoint="nope"), tmp_path / "out3")
    assert "has checkpoint 'nope'" in unknown.value.message and unknown.value.hint == "known: default"


def test_suite_members_get_a_row_each_with_their_verdict_and_native_count_and_a_bar_plot(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for name, member, cpu, passed in (("m1", "is", "o3", True), ("m2", "mg", "o3", False), ("m3", "is", "atomic", True)):
        d = work / "runs" / name
        d.mkdir(parents=True)
        (d / "stats.txt").write_text(STATS.format(a=1000, c=2000, extra="") + STATS.format(a=400, c=200, extra=""))
        m = Manifest("runs", name)
        verdict = {"passed": passed, "said": " Verification    =               SUCCESSFUL" if passed else "", "why": "" if passed else "npb mg: printed 0 of the 1"}
        m.set_part("run", {}, {}, run_info_json("default", f"/w/suites/scripts/npb-{member}-S-1t.sh", board={"cpu": cpu},
                                                roi={"dump": 2}, member={"suite": "npb", "member": member, "input": "S", "threads": 1},
                                                verdict=verdict))
        write_manifest(d, m)
    bench = work / "benchmarks" / "npb-is-S-1t"
    bench.mkdir(parents=True)
    b = Manifest("benchmarks", "npb-is-S-1t")
    b.set_part("benchmark", {}, {}, {"member": {"suite": "npb", "member": "is", "input": "S", "threads": 1},
                                     "verdict": {"passed": True, "said": "Verification = SUCCESSFUL"}, "native_roi_insts": 390})
    write_manifest(bench, b)
    rep = report.report(Layout(work), report.Selection(), tmp_path / "out")
    suite = list(csv.DictReader((tmp_path / "out" / "suite.csv").open()))
    assert [(r["benchmark"], r["cpu"], r["verification"].split(":")[0]) for r in suite] == [
        ("npb is", "atomic", "PASS"), ("npb is", "o3", "PASS"), ("npb mg", "o3", "FAIL")]
    assert suite[1]["roi_insts"] == "400" and suite[1]["native_roi_insts"] == "390" and suite[2]["native_roi_insts"] == ""
    assert {"suite.md", "roi_ipc_by_benchmark.png"} <= {p.name for p in rep.files}


def _estimate(work: Path, name: str, cpi: float, full_run: str, full_cpi: float, sampling: str = "is-roi-r0123abcd",
              checkpoint: str = "is-roi") -> None:
    from hackback.store.records import Board, EstimateInfo

    board = Board("2GiB", 1, "o3", "l1l2", "32KiB", "32KiB", "512KiB", switch_from="atomic", switch_after_insts=100,
                  warmup_insts=10, measure_insts=40)
    e = EstimateInfo(sampling, board, cpi, 0.1, 6, 3, 400, 4000, 10.0, 6.0, 20.0, ("s0",), 0.1, 0.2, full_cpi, 30.0, full_run,
                     0.1, 0.25, checkpoint)
    d = work / "estimates" / name
    d.mkdir(parents=True)
    m = Manifest("estimates", name)
    m.set_part("estimate", {}, {}, e.to_json())
    write_manifest(d, m)


def test_the_report_lists_estimates_judged_only_by_a_full_run_from_their_own_checkpoint(tmp_path: Path) -> None:
    """An estimate beside the full run from the checkpoint it sampled; one an earlier hackback
    judged by the suite's switching run from the parent (another history) gets no error."""
    work = tmp_path / "work"
    _run(work, "is-roi-full", "npb-is.sh", "32KiB", "0.1")
    (work / "runs" / "is-roi-full" / "manifest.json").write_text(
        (work / "runs" / "is-roi-full" / "manifest.json").read_text().replace('"default"', '"is-roi"'))
    _run(work, "default-switching", "npb-is.sh", "32KiB", "0.1")
    _estimate(work, "e-own", 2.2, "is-roi-full", 2.0)
    _estimate(work, "e-parent", 2.2, "default-switching", 2.1)
    _estimate(work, "e-older", 2.2, "is-roi-full", 2.0, sampling="is-roi", checkpoint="")  # named before rules were
    report.report(Layout(work), report.Selection(), tmp_path / "out")
    rows = {r["estimate"]: r for r in csv.DictReader((tmp_path / "out" / "estimates.csv").open())}
    assert rows["e-own"]["full_cpi"] == "2" and rows["e-own"]["error"] == "0.1" and rows["e-own"]["covered"] == "no"
    assert rows["e-parent"]["cpi"] == "2.2" and rows["e-parent"]["full_cpi"] == "" and rows["e-parent"]["error"] == ""
    assert rows["e-own"]["detailed_share"] == "0.1" and rows["e-own"]["ipc"] == "0.454545"
    assert rows["e-own"]["checkpoint"] == "is-roi" and rows["e-own"]["sampling"] == "is-roi-r0123abcd"
    assert rows["e-older"]["checkpoint"] == "is-roi" and rows["e-older"]["error"] == "0.1"
    mine = report.report(Layout(work), report.Selection(checkpoint="is-roi"), tmp_path / "out3")
    assert mine.files and len(list(csv.DictReader((tmp_path / "out3" / "estimates.csv").open()))) == 3
    only = report.report(Layout(work), report.Selection(checkpoint="default"), tmp_path / "out2")
    assert only.rows and not (tmp_path / "out2" / "estimates.csv").exists()  # estimates of is-roi are not default's
