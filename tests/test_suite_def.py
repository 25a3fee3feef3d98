"""The suites as data (hackback/suites/<name>/) and the verdict on a member's
run: its own verification, matched whole, and gem5's work items."""
from __future__ import annotations

from pathlib import Path

import pytest

from hackback.base.errors import UsageError
from hackback.store.records import Member, WorkItem
from hackback.services.suite_def import SuiteDef, native_roi_insts

NPB_PASS = " Verification    =               SUCCESSFUL\n"
NPB_FAIL = " Verification    =             UNSUCCESSFUL\n"  # contains the word SUCCESSFUL
ROI = (WorkItem("workbegin", 1, 1), WorkItem("workend", 2, 2))


def test_both_suites_load_with_their_members_inputs_and_commands() -> None:
    npb, gapbs = SuiteDef.load("npb"), SuiteDef.load("gapbs")
    assert npb.members == ("bt", "cg", "ep", "ft", "is", "lu", "mg", "sp")
    assert gapbs.members == ("bfs", "pr", "cc", "sssp", "bc", "tc")
    assert npb.input_of("") == "S" and npb.input_of("a") == "A" and gapbs.input_of("") == "g10"
    assert npb.guest_command(Member("npb", "is", "S", 1)) == "./is.S.x"
    assert gapbs.guest_command(Member("gapbs", "pr", "u12", 2, 3)) == "./pr -u 12 -n 3 -v"
    script = npb.script(Member("npb", "mg", "W", 2))
    assert script.startswith("#!/bin/sh\n") and "export OMP_NUM_THREADS=2\n" in script and script.endswith("exec ./mg.W.x\n")
    assert npb.digest() != gapbs.digest() and len(npb.digest()) == 64


@pytest.mark.parametrize("call,says", [
    (lambda: SuiteDef.load("spec"), "no benchmark suite 'spec'"),
    (lambda: SuiteDef.load("npb").chosen(["is", "xx"]), "npb has no member 'xx'"),
    (lambda: SuiteDef.load("npb").input_of("Q"), "npb has no class 'Q'"),
    (lambda: SuiteDef.load("gapbs").input_of("10"), "is not a synthetic graph"),
])
def test_a_suite_member_or_input_it_does_not_have_is_one_line(call, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=says) as e:
        call()
    assert "\n" not in e.value.one_line()


def test_npb_passes_only_on_its_whole_verification_line_and_a_roi_gem5_saw() -> None:
    npb, m = SuiteDef.load("npb"), Member("npb", "mg", "S", 1)
    assert npb.judge(m, "x\n" + NPB_PASS, ROI).passed
    failed = npb.judge(m, " Verification Successful\n" + NPB_FAIL, ROI)  # BT, LU, SP print the first along the way
    assert not failed.passed and "its verification failed" in failed.why and "UNSUCCESSFUL" in failed.said
    silent = npb.judge(m, " Verification Successful\n", ROI)
    assert not silent.passed and "printed 0 of the 1 verification verdict(s)" in silent.why
    no_roi = npb.judge(m, NPB_PASS, (WorkItem("workbegin", 1, 1),))
    assert not no_roi.passed and "gem5 saw 1 m5 workbegin and 0 workend" in no_roi.why and "npb mg (S, 1 thread)" in no_roi.why
    # Restored inside the ROI: its workbegin came before the run.
    assert npb.judge(m, NPB_PASS, (WorkItem("workend", 2, 1),), began_before=True).passed
    assert npb.judge(m, NPB_PASS, roi_from_gem5=False).passed  # a native run: no work items


def test_gapbs_owes_a_pass_and_a_roi_per_trial() -> None:
    gapbs, m = SuiteDef.load("gapbs"), Member("gapbs", "pr", "g10", 1, 2)
    two = "Verification:           PASS\nTrial Time: 1\nVerification:           PASS\n"
    assert gapbs.judge(m, two, ROI * 2).passed
    assert "printed 1 of the 2" in gapbs.judge(m, two.split("Trial")[0], ROI * 2).why
    assert not gapbs.judge(m, two.replace("PASS", "FAIL", 1), ROI * 2).passed
    assert "not the 2 region(s)" in gapbs.judge(m, two, ROI).why


def test_the_native_roi_count_is_callgrinds_total(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("events: Ir\nfl=x\n0 3\nsummary: 15786364\ntotals: 15786364\n")
    assert native_roi_insts(out) == 15786364 and native_roi_insts(tmp_path / "none") is None
