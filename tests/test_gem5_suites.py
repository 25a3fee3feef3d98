"""The benchmark suites with real gem5 (gem5 tier, and the suites' sources
handed over as a user would): NPB's IS and MG at class S and GAPBS's pr on a
2^10-vertex graph, built, run from the default checkpoint on atomic until
their own ROI and on o3 with L1+L2 through it, each judged by its own verdict;
a member that fails its verification for real; a checkpoint at IS's own ROI,
restored on o3, measuring the same ROI. Every figure is checked against the
run's stats.txt or the native count of the same binary."""
from __future__ import annotations

import csv
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from conftest import hackback_env, invoke, suite_source
from hackback.services import pmem, sampling
from hackback.base import config
from hackback.steps import sample as sample_step
from hackback.store.manifest import Manifest

pytestmark = pytest.mark.gem5
SWITCHING_O3 = ["--cpu", "o3", "--caches", "l1l2", "--switch-from", "atomic"]


@pytest.fixture(scope="module")
def env(gem5_world: dict[str, Path], gem5_src: Path, gem5_binary: Optional[Path]) -> dict[str, str]:
    return hackback_env(gem5_world["work"], gem5_src, gem5_binary)


@pytest.fixture(scope="module")
def sources() -> dict[str, Path]:
    return {"npb": suite_source("npb"), "gapbs": suite_source("gapbs")}


@pytest.fixture(scope="module")
def work(env: dict[str, str], gem5_world: dict[str, Path]) -> Path:
    out = invoke(env, "checkpoint")  # the gem5 tier's one checkpoint (up to date: a no-op)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    return gem5_world["work"]


def _runs(stdout: str) -> dict[str, str]:
    """member -> run id, from the summaries a suite prints."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^run (\S+?)(?: \(up to date, not rerun\))?: \w+ (\w+) \(", stdout, re.M)}


@pytest.fixture(scope="module")
def suites(env: dict[str, str], work: Path, sources: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    npb = invoke(env, "suite", "npb", "--members", "is,mg", "--source", str(sources["npb"]), *SWITCHING_O3, "-j", "2",
                 timeout=3600)
    gapbs = invoke(env, "suite", "gapbs", "--members", "pr", "--input", "g10", "--source", str(sources["gapbs"]),
                   *SWITCHING_O3, timeout=3600)
    return {"npb": npb, "gapbs": gapbs}


def config_ini(run: Path, section: str) -> dict[str, str]:
    """One section of the config.ini gem5 wrote for the run (the system it built)."""
    import configparser

    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # gem5's names are case-sensitive
    ini.read(run / "config.ini")
    return dict(ini[section])


def stats_dump(run: Path, dump: int) -> dict[str, str]:
    """stats.txt's dump number `dump`, read here on its own (not with hackback's parser)."""
    out: dict[str, str] = {}
    seen = 0
    for line in (run / "stats.txt").read_text().splitlines():
        if line.startswith("---------- Begin"):
            seen += 1
        elif seen == dump and len(f := line.split()) >= 2:
            out.setdefault(f[0], f[1])
    return out


def test_npb_and_gapbs_members_verify_switching_to_o3_at_their_own_roi(suites: dict[str, subprocess.CompletedProcess[str]],
                                                                       work: Path) -> None:
    for name, out in suites.items():
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr
    runs = {**_runs(suites["npb"].stdout), **_runs(suites["gapbs"].stdout)}
    assert set(runs) == {"is", "mg", "pr"}, suites["npb"].stdout[-3000:]
    for member, rid in runs.items():
        run = work / "runs" / rid
        info = Manifest.read(run).parts["run"]["info"]  # type: ignore[union-attr]
        assert info["verdict"]["passed"] and info["member"]["member"] == member, info.get("verdict")
        console = (run / "console.log").read_text(errors="replace")
        assert re.search(r"^\s*Verification\s*[:=]\s+(SUCCESSFUL|PASS)\s*$", console, re.M), console[-1500:]
        # The ROI on o3 alone, read from its own dump: the switched-to cores committed it, the atomic ones nothing.
        roi = stats_dump(run, info["roi"]["dump"])
        o3 = float(roi["board.processor.switch.core.commitStats0.numInsts"])
        assert o3 == info["roi"]["insts"] > 100_000 and float(roi.get("board.processor.cores.core.commitStats0.numInsts", 0)) == 0
        print(f"{member}: ROI {o3:,.0f} instructions on o3, IPC {info['roi']['ipc']:.3f}, host {info['host_seconds']:.0f} s")


def test_gem5s_roi_is_the_native_count_plus_the_kernels_share(suites: dict[str, subprocess.CompletedProcess[str]],
                                                              work: Path) -> None:
    """The sanity figure: each member's ROI instructions in gem5 beside callgrind's
    native count of the same binary's ROI (user code only: gem5 also counts the
    kernel's interrupts, page faults and console output inside the ROI)."""
    text = suites["npb"].stdout + suites["gapbs"].stdout
    for member in ("is", "mg", "pr"):
        m = re.search(rf"^\w+ {member} \(.*\): ROI ([\d,]+) instructions in gem5, ([\d,]+) natively \(callgrind\): ([+-][\d.]+)%",
                      text, re.M)
        assert m, text[-3000:]
        gem5, native, share = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")), float(m.group(3))
        assert native <= gem5 <= native * 1.5 and share >= 0, (member, gem5, native)


def test_the_report_has_a_suite_view_with_each_members_verdict(suites: dict[str, subprocess.CompletedProcess[str]],
                                                               env: dict[str, str], tmp_path: Path) -> None:
    out = invoke(env, "report", "--out", str(tmp_path / "report"), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    rows = {(r["benchmark"], r["cpu"], r["caches"]): r for r in csv.DictReader((tmp_path / "report" / "suite.csv").open())}
    for bench in ("npb is", "npb mg", "gapbs pr"):
        row = rows[(bench, "atomic-to-o3", "l1l2")]
        assert row["verification"].startswith("PASS") and float(row["roi_insts"]) > 0 and float(row["roi_ipc"]) > 0, row
        assert int(row["native_roi_insts"]) > 0, row
    assert (tmp_path / "report" / "roi_ipc_by_benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_is_a_no_op_and_the_suite_leaves_image_kernel_and_checkpoint_as_they_were(
        suites: dict[str, subprocess.CompletedProcess[str]], env: dict[str, str], sources: dict[str, Path]) -> None:
    start = time.monotonic()
    again = invoke(env, "suite", "npb", "--members", "is,mg", "--source", str(sources["npb"]), *SWITCHING_O3, "-j", "2",
                   timeout=1800)
    assert again.returncode == 0 and again.stdout.count("(up to date, not rerun)") == 2, again.stdout[-3000:]
    assert "benchmark npb-is-S-1t is up to date" in again.stdout and time.monotonic() - start < 120
    plan = invoke(env, "checkpoint", "--dry-run", timeout=600)
    assert plan.returncode == 0 and re.search(r"^plan: checkpoint\s+up to date", plan.stdout, re.M), plan.stdout[-2000:]


def test_a_member_that_fails_its_own_verification_fails_in_one_line_and_its_run_is_kept(
        env: dict[str, str], work: Path, sources: dict[str, Path], tmp_path: Path) -> None:
    """MG reads mg.input from its working directory: a 32^3 grid with 2
    iterations is no class it knows, and it says UNSUCCESSFUL (and exits 0)."""
    inputs = tmp_path / "mg-input"
    inputs.mkdir()
    (inputs / "mg.input").write_text("5\n32 32 32\n2\n0 0 0 0 0 0 0 0\n")  # lt, the grid, iterations, debug flags
    out = invoke(env, "suite", "npb", "--members", "mg", "--source", str(sources["npb"]), "--payload", str(inputs),
                 "--force", timeout=1800)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 18 and len(lines) == 1, out.stdout[-2000:] + out.stderr
    assert "npb mg (S, 1 thread): its verification failed" in lines[0] and "UNSUCCESSFUL" in lines[0], lines
    rid = _runs(out.stdout)["mg"]
    assert (work / "runs" / rid / "manifest.json").is_file()  # kept, with its verdict
    assert "Reading from input file mg.input" in (work / "runs" / rid / "console.log").read_text(errors="replace")


def test_a_checkpoint_at_is_own_roi_restores_on_o3_and_measures_the_same_roi(
        suites: dict[str, subprocess.CompletedProcess[str]], env: dict[str, str], work: Path, sources: dict[str, Path]) -> None:
    made = invoke(env, "suite", "npb", "--members", "is", "--source", str(sources["npb"]), "--save-checkpoint", "is-roi",
                  timeout=1800)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr
    info = Manifest.read(work / "checkpoints" / "is-roi").parts["checkpoint"]["info"]  # type: ignore[union-attr]
    assert info["saved_at"] == "workbegin" and info["made_by"]["member"]["member"] == "is"
    out = invoke(env, "restore", "--checkpoint", "is-roi", "--cpu", "o3", "--caches", "l1l2", timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    m = re.search(r"^run (\S+?)(?: \(|:)", out.stdout, re.M)
    assert m and m.group(1).startswith("is-roi-npb-is-S-1t-o3-l1l2"), out.stdout[-2000:]
    run = Manifest.read(work / "runs" / m.group(1)).parts["run"]["info"]  # type: ignore[union-attr]
    assert run["verdict"]["passed"] and run["board"]["in_roi"]
    switching = Manifest.read(work / "runs" / _runs(suites["npb"].stdout)["is"]).parts["run"]["info"]  # type: ignore[union-attr]
    ours, theirs = run["roi"]["insts"], switching["roi"]["insts"]
    # Both from the same state at IS's workbegin; only interrupt timing (o3 from the start vs a switch) may differ.
    assert abs(ours - theirs) <= 500, (ours, theirs)
    print(f"IS ROI from its own checkpoint on o3: {ours:,.0f} instructions; the switching run's {theirs:,.0f}")


SAMPLE_FLAGS = ["--cpu", "o3", "--caches", "l1l2", "-j", "2"]
# A few samples (the tier's time): at most 2 clusters, 3 samples a cluster on average (2 each, the
# rest by weight); the shipped rule is at most 10 clusters.
FEW = {"HACKBACK_SAMPLE_MAX_K": "2", "HACKBACK_SAMPLE_PER_CLUSTER": "3"}
# IS's sampling by the FEW rule: samplings/is-roi-r<its rule's digest> (others, of other rules, are kept beside it).
FEW_SAMPLING = sample_step.sampling_name("is-roi", sample_step.rule_of(config.load(flags={}, environ=FEW)))


@pytest.fixture(scope="module")
def sampled(suites: dict[str, subprocess.CompletedProcess[str]], env: dict[str, str], work: Path,
            sources: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    made = invoke(env, "suite", "npb", "--members", "is", "--source", str(sources["npb"]), "--save-checkpoint", "is-roi",
                  timeout=1800)  # the ROI checkpoint (a no-op when the test before took it)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr
    return invoke({**env, **FEW}, "sample", "--checkpoint", "is-roi", *SAMPLE_FLAGS, timeout=3600)


def test_is_is_sampled_from_its_roi_checkpoint_and_the_estimate_is_its_samples_own(
        sampled: subprocess.CompletedProcess[str], work: Path) -> None:
    """The flow end to end on IS's ROI: gem5's vectors parsed, the weights summing
    to 1, each sample checkpoint restored on o3 measuring exactly its interval,
    and the weighted figures what this test recomputes from the samples' own stats.txt."""
    import gzip
    import json

    assert sampled.returncode == 0, sampled.stdout[-4000:] + sampled.stderr
    prof = json.loads((work / "profiles" / "is-roi-b10000" / "manifest.json").read_text())["parts"]["profile"]["info"]
    with gzip.open(work / "profiles" / "is-roi-b10000" / "simpoint.bb.gz", "rt") as f:
        lines = [ln for ln in f if ln.startswith("T")]
    assert len(lines) == prof["intervals"] and prof["roi_insts"] - prof["profiled_insts"] < 20_000, prof
    samp = json.loads((work / "samplings" / FEW_SAMPLING / "manifest.json").read_text())["parts"]["sampling"]["info"]
    assert abs(sum(samp["weights"]) - 1) < 1e-9 and 1 <= samp["k"] <= 2 and len(samp["samples"]) == 3 * samp["k"]
    for c in samp["cpts"]:  # each sample's memory stored as it is, sparse (restored below without inflating)
        memory = work / "samplings" / FEW_SAMPLING / c / "board.physmem.store0.pmem"
        assert not pmem.is_compressed(memory) and memory.stat().st_blocks * 512 < memory.stat().st_size // 4, memory
    per = [sum(s["cluster"] == c for s in samp["samples"]) for c in range(samp["k"])]
    big = [samp["intervals"]] * samp["k"]  # no cluster of IS's ~400 intervals is smaller than its share of 6
    assert per == sampling.allocation(samp["weights"], big, sampling.Rule(per_cluster=3)), (per, samp["weights"])
    # The estimate this sampling wrote, as it says (a kept work dir holds others, of other rules and boards).
    where = re.search(r"^    (\S+/estimates/is-roi-\S+)$", sampled.stdout, re.M)
    assert where, sampled.stdout[-2000:]
    est = json.loads((Path(where.group(1)) / "manifest.json").read_text())["parts"]["estimate"]["info"]
    cpis: dict[int, list[float]] = {}
    for rid, s in zip(est["runs"], samp["samples"]):
        run = work / "runs" / rid
        info = json.loads((run / "manifest.json").read_text())["parts"]["run"]["info"]
        assert info["cause"] == "measured" and info["board"]["cpu"] == "o3" and info["board"]["measure_insts"] == s["length"]
        # The functional warm-up trained o3's own branch predictor, as gem5's config.ini of the run says.
        assert config_ini(run, "board.processor.cores.core")["branchPred"] == "board.processor.switch.core.branchPred"
        dump = stats_dump(run, info["roi"]["dump"])  # the measured part, read here on its own
        insts = float(dump["board.processor.switch.core.commitStats0.numInsts"])
        cycles = float(dump["board.processor.switch.core.numCycles"])
        assert abs(insts - s["length"]) <= 16, (insts, s["length"])  # exactly its interval, to the last macro-op
        cpis.setdefault(s["cluster"], []).append(cycles / insts)
    expected = sum(samp["weights"][c] * sum(v) / len(v) for c, v in cpis.items())
    assert est["cpi"] == pytest.approx(expected, rel=1e-9)
    assert re.search(rf"^sampled {FEW_SAMPLING} on atomic-to-o3 CPU, l1l2 caches: CPI [\d.]+ ± [\d.]+", sampled.stdout, re.M), sampled.stdout[-2000:]
    print(f"IS sampled: CPI {est['cpi']:.4f} ± {est['half_width']:.4f}, full {est.get('full_cpi')}, "
          f"{len(samp['samples'])} samples in {samp['k']} clusters")


def test_a_rerun_of_the_sampling_is_a_no_op_and_a_multi_core_or_boot_checkpoint_is_refused(
        sampled: subprocess.CompletedProcess[str], env: dict[str, str]) -> None:
    start = time.monotonic()
    again = invoke({**env, **FEW}, "sample", "--checkpoint", "is-roi", *SAMPLE_FLAGS, timeout=1800)
    assert again.returncode == 0 and "profile is-roi-b10000 is up to date" in again.stdout, again.stdout[-2000:]
    assert f"sampling {FEW_SAMPLING} is up to date" in again.stdout and "(up to date, not rerun)" in again.stdout
    wall = re.compile(rf"^sampled {FEW_SAMPLING} on .* host s \((\d+) s wall\)", re.M)
    first, kept = wall.search(sampled.stdout), wall.search(again.stdout)
    assert first and kept and kept.group(1) == first.group(1) != "0", (first, kept)  # the batch's wall, not the no-op's
    assert time.monotonic() - start < 120
    out = invoke(env, "sample", "--checkpoint", "default", *SAMPLE_FLAGS, timeout=600)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "was not saved at a region of interest's start" in lines[0], lines


def test_another_l2s_samples_run_as_a_slurm_job_array_and_give_the_estimate_when_all_are_back(
        sampled: subprocess.CompletedProcess[str], env: dict[str, str], work: Path, slurm_cluster) -> None:  # type: ignore[no-untyped-def]
    """A second cache configuration (a 256 KiB L2) with --on slurm on the single-node
    cluster: the profile and sample checkpoints reused, the samples one job array
    (each task restoring its own sample checkpoint), no estimate while they are out,
    and with --wait the estimate from all of them."""
    import json

    cluster_env = {**env, **FEW, "SLURM_CONF": str(slurm_cluster.conf)}
    flags = ["sample", "--checkpoint", "is-roi", "--cpu", "o3", "--caches", "l1l2", "--l2", "256KiB", "--on", "slurm"]
    samples = len(json.loads((work / "samplings" / FEW_SAMPLING / "manifest.json").read_text())["parts"]["sampling"]["info"]["samples"])
    import shutil

    for run in work.glob("runs/is-roi-s*-l1l2-*"):  # a kept work dir's runs of this board: submitted afresh here
        info = json.loads((run / "manifest.json").read_text())["parts"]["run"]["info"] if (run / "manifest.json").is_file() else {}
        if info.get("board", {}).get("l2") == "256KiB":
            shutil.rmtree(run)
    out = invoke(cluster_env, *flags, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert f"sampling {FEW_SAMPLING} is up to date" in out.stdout and f"{samples} to submit" in out.stdout, out.stdout[-3000:]
    assert f"0 of {samples} samples measured; the estimate comes when all are" in out.stdout
    assert "sampled is-roi-" not in out.stdout  # no estimate from samples still out
    batch = re.search(r"; batch (\S+)$", out.stdout, re.M)
    assert batch, out.stdout[-2000:]
    deadline = time.monotonic() + 600
    while not (Path(batch.group(1)) / "status" / "task-0.json").is_file() and time.monotonic() < deadline:
        time.sleep(2)  # one task done before --wait follows the job: it must count once, not twice
    done = invoke(cluster_env, *flags, "--wait", timeout=1800)
    assert done.returncode == 0 and "0 to submit" in done.stdout, done.stdout[-3000:] + done.stderr
    assert re.search(rf"^{samples} run\(s\): [1-9]\d* done already, [1-9]\d* pending or running in an earlier job",
                     done.stdout, re.M), done.stdout[-3000:]
    assert f"\n{samples} runs:\n" in done.stdout, done.stdout[-3000:]
    m = re.search(rf"^sampled {FEW_SAMPLING} on atomic-to-o3 CPU, l1l2 caches: CPI ([\d.]+) ± ", done.stdout, re.M)
    where = re.search(r"^    (\S+/estimates/is-roi-\S+)$", done.stdout, re.M)
    assert m and where, done.stdout[-3000:]
    est = json.loads((Path(where.group(1)) / "manifest.json").read_text())["parts"]["estimate"]["info"]
    assert len(est["runs"]) == samples and est["board"]["l2"] == "256KiB" and f"{est['cpi']:.4f}" == m.group(1)
    for rid in est["runs"]:  # each a run of its own sample checkpoint, made by a task of the array
        info = json.loads((work / "runs" / rid / "manifest.json").read_text())["parts"]["run"]["info"]
        assert info["cause"] == "measured" and info["checkpoint"]["name"] == f"is-roi-s{est['runs'].index(rid):02d}"
