"""The whole method with real gem5 (gem5 tier): boot -> checkpoint -> restores.

Needs HACKBACK_TEST_GEM5_SRC (a gem5 v24 tree or tarball) and, to skip hours of
compiling, HACKBACK_TEST_GEM5_BINARY (a gem5.opt built from it). Everything is
built as `invoke` builds it, in the tier's one work directory (conftest
gem5_world): env, kernel and image, then one boot to the checkpoint. The
restores run two at a time, all from that one checkpoint; nothing is written to
the checkpoint, image or kernel (their sha256 are compared after all of them).
"""
from __future__ import annotations

import concurrent.futures
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import REPO, hackback_env, invoke
from hackback.store.hashes import HashCache
from hackback.store.manifest import Manifest

pytestmark = pytest.mark.gem5
HELLO = REPO / "examples" / "hello.rcS"
CHASE = REPO / "examples" / "pointer-chase"
LAYER = REPO / "examples" / "layer"
WARMUP = 20_000  # instructions on o3 before the measured part of a switching chase
SWITCH_AFTER = 300_000  # instructions on atomic before a switch by count


@pytest.fixture(scope="module")
def chase_bin(engine, tools) -> Path:  # type: ignore[no-untyped-def]
    """examples/pointer-chase/bin, built by its build.sh as the quickstart builds it
    (static, the tools image's gcc): the quickstart's restore is then one of these."""
    out = subprocess.run(["sh", str(CHASE / "build.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and (CHASE / "bin" / "chase").is_file(), out.stdout + out.stderr
    return CHASE / "bin"


@pytest.fixture(scope="module")
def env(gem5_world: dict[str, Path], gem5_src: Path, gem5_binary: Optional[Path]) -> dict[str, str]:
    return hackback_env(gem5_world["work"], gem5_src, gem5_binary)


@pytest.fixture(scope="module")
def checkpoint_dir(env: dict[str, str], gem5_world: dict[str, Path]) -> Path:
    out = invoke(env, "checkpoint")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    return gem5_world["work"] / "checkpoints" / "default"


def info_of(directory: Path, part: str) -> dict[str, Any]:
    manifest = Manifest.read(directory)
    assert manifest is not None, f"no manifest in {directory}"
    info: dict[str, Any] = manifest.parts[part]["info"]
    return info


def digests(paths: list[Path]) -> dict[str, str]:
    return {str(p): HashCache.sha256_uncached(p) for root in paths for p in sorted(root.rglob("*") if root.is_dir() else [root]) if p.is_file()}


@pytest.fixture(scope="module")
def watched(checkpoint_dir: Path) -> dict[str, str]:
    """sha256 of checkpoint, image and kernel before any restore."""
    info = info_of(checkpoint_dir, "checkpoint")
    paths = [checkpoint_dir / info["cpt"], Path(info["image"]["path"]), Path(info["kernel"]["path"])]
    return digests(paths)


# name -> (script, restore flags). All from the one checkpoint, two at a time.
def _restores(tmp: Path, chase_bin: Path) -> dict[str, tuple[Path, list[str]]]:
    again = tmp / "hello-again.rcS"  # the same script under another name: a second, independent run
    again.write_bytes(HELLO.read_bytes())
    exit3 = tmp / "exit3.rcS"
    exit3.write_text("#!/bin/sh\necho about to fail\nexit 3\n")
    sleep = tmp / "sleep-half.rcS"
    sleep.write_text("#!/bin/sh\nsleep 0.5\n")
    return {
        "atomic": (HELLO, ["--cpu", "atomic"]),
        "o3-l1l2": (HELLO, ["--cpu", "o3", "--caches", "l1l2"]),
        "timing": (HELLO, ["--cpu", "timing"]),
        "atomic-again": (again, ["--cpu", "atomic"]),
        "exit3": (exit3, ["--cpu", "atomic"]),
        "sleep": (sleep, ["--cpu", "atomic"]),
        # The pointer chase from one checkpoint, with two payload inputs: a working set
        # in the 32 KiB L1D and one well beyond it (and twice the steps).
        **{f"chase-{i}": (CHASE / "run.sh", ["--cpu", "o3", "--caches", "l1l2", "--payload", str(chase_bin),
                                             "--payload", str(CHASE / "inputs" / i)]) for i in ("l1", "beyond")},
        # The same chase starting on atomic, switching to o3 at its m5 workbegin; with and without a warm-up.
        **{f"chase-switch{tag}": (CHASE / "run.sh", ["--cpu", "o3", "--caches", "l1l2", "--switch-from", "atomic", *warm,
                                                     "--payload", str(chase_bin), "--payload", str(CHASE / "inputs" / "l1")])
           for tag, warm in (("", []), ("-warm", ["--warmup-insts", str(WARMUP)]))},
        "switch-after": (HELLO, ["--cpu", "timing", "--switch-from", "atomic", "--switch-after-insts", str(SWITCH_AFTER)]),
        "never-switched": (HELLO, ["--cpu", "timing", "--switch-from", "atomic"]),  # hello has no m5 workbegin
        # A warm-up longer than the chase's whole ROI (80,009 instructions): its workend comes first.
        "warmup-too-long": (CHASE / "run.sh", ["--cpu", "o3", "--caches", "l1l2", "--switch-from", "atomic",
                                               "--warmup-insts", "1000000", "--payload", str(chase_bin),
                                               "--payload", str(CHASE / "inputs" / "l1")]),
    }


@pytest.fixture(scope="module")
def restores(env: dict[str, str], checkpoint_dir: Path, watched: dict[str, str], chase_bin: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], Optional[Path]]]:
    tmp = tmp_path_factory.mktemp("scripts")
    plan = _restores(tmp, chase_bin)
    runs = checkpoint_dir.parent.parent / "runs"

    def one(name: str) -> tuple[subprocess.CompletedProcess[str], Optional[Path]]:
        script, flags = plan[name]
        out = invoke(env, "restore", "--script", str(script), *flags, "--force", timeout=3600)
        m = re.search(r"^run (\S+?)(?: \(|:)", out.stdout, re.M)
        return out, (runs / m.group(1)) if m else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(plan, pool.map(one, plan)))
    return done


def stats_of(run: Path, dump: int = 1) -> dict[str, str]:
    """stats.txt's dump number `dump`, read here on its own (not with hackback's parser)."""
    out: dict[str, str] = {}
    seen = 0
    for line in (run / "stats.txt").read_text().splitlines():
        if line.startswith("---------- Begin"):
            seen += 1
        elif line.startswith("---------- End") and seen == dump:
            break
        elif seen == dump:
            f = line.split()
            if len(f) >= 2:
                out.setdefault(f[0], f[1])
    return out


def test_checkpoint_is_taken_after_linux_boot(checkpoint_dir: Path) -> None:
    info = info_of(checkpoint_dir, "checkpoint")
    cpt = checkpoint_dir / info["cpt"]
    assert (cpt / "m5.cpt").is_file()
    assert any(p.name.endswith(".cow") for p in cpt.iterdir()), "the disk's copy-on-write layer is in the checkpoint"
    console = (checkpoint_dir / "console.log").read_text(errors="replace")
    assert "Linux version" in console and "HACKBACK-READY" in console
    assert info["gem5"]["release"].startswith("24.0") and info["tick"] > 0
    print(f"boot to checkpoint: {info['sim_seconds']:.3f} simulated s in {info['host_seconds']:.0f} host s")


@pytest.mark.parametrize("name,cpu_type,caches", [
    ("atomic", "BaseAtomicSimpleCPU", False),  # gem5 v24's config.ini names the base types
    ("timing", "BaseTimingSimpleCPU", False),
    ("o3-l1l2", "BaseO3CPU", True),
])
def test_hello_restores_on_each_cpu_with_its_caches(restores, name: str, cpu_type: str, caches: bool) -> None:  # type: ignore[no-untyped-def]
    out, run = restores[name]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert run is not None and run.is_dir(), out.stdout[-2000:]
    console = (run / "console.log").read_text(errors="replace")
    assert "hello from the restored guest" in console and "HACKBACK-SCRIPT-EXIT 0" in console
    assert "HACKBACK-READY" not in console  # the restore starts after the checkpoint
    rec = info_of(run, "run")
    assert rec["cause"] == "exit" and rec["script_status"] == "0"
    for f in ("stats.txt", "config.ini", "config.json", "script.rcS"):
        assert (run / f).is_file()
    # What really ran, from gem5's own record of the system.
    ini = (run / "config.ini").read_text()
    core_types = re.findall(r"^\[board\.processor\.cores(?:\d+)?\.core\]\s*\ntype=(\S+)", ini, re.M)
    assert core_types and set(core_types) == {cpu_type}, core_types
    sections = set(re.findall(r"^\[(board\.cache_hierarchy\.[^].]+)\]", ini, re.M))
    has_l1d, has_l2 = "board.cache_hierarchy.l1d-cache-0" in sections, "board.cache_hierarchy.l2-cache-0" in sections
    assert has_l1d == caches and has_l2 == caches, sorted(sections)
    stats = stats_of(run)
    assert float(stats["simInsts"]) > 0
    if caches:
        assert float(stats["board.cache_hierarchy.l1d-cache-0.overallAccesses::total"]) > 0
        assert float(stats["board.cache_hierarchy.l2-cache-0.overallMisses::total"]) > 0
        l2 = ini.split("[board.cache_hierarchy.l2-cache-0]", 1)[1].split("\n[", 1)[0]
        assert re.search(r"^size=524288$", l2, re.M), "the l2 is restore.l2's 512KiB"


def test_a_script_that_exits_3_makes_the_restore_exit_3(restores) -> None:  # type: ignore[no-untyped-def]
    out, _run = restores["exit3"]
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr
    assert "exited 3" in out.stderr.strip().splitlines()[-1]


def test_the_same_run_twice_gives_identical_stats(restores) -> None:  # type: ignore[no-untyped-def]
    (a, ra), (b, rb) = restores["atomic"], restores["atomic-again"]
    assert a.returncode == 0 and b.returncode == 0 and ra and rb and ra != rb
    host = re.compile(r"^host|Rate$|Seconds$")  # host-side figures vary; simSeconds too is fine but keep the rule simple
    sa = {k: v for k, v in stats_of(ra).items() if not host.search(k.split(".")[-1]) or k == "simSeconds"}
    sb = {k: v for k, v in stats_of(rb).items() if not host.search(k.split(".")[-1]) or k == "simSeconds"}
    assert sa == sb and len(sa) > 20


def test_guest_time_runs_true_after_the_boot_timing_constants(restores) -> None:  # type: ignore[no-untyped-def]
    """lpj, tsc_early_khz and lapic_timer_period are derived, not measured, at
    boot: were one wrong, the guest's timers would run fast or slow. A `sleep
    0.5` must take 0.5 simulated seconds (plus the restore's few ms)."""
    out, run = restores["sleep"]
    assert out.returncode == 0 and run is not None, out.stdout[-2000:] + out.stderr
    sim = float(info_of(run, "run")["sim_seconds"])
    assert 0.5 <= sim < 0.56, f"sleep 0.5 took {sim:.3f} simulated s"


def test_a_changed_copy_of_the_image_is_refused(restores, env: dict[str, str], checkpoint_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    info = info_of(checkpoint_dir, "checkpoint")
    copy = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", info["image"]["path"], str(copy)], check=True)
    with open(copy, "r+b") as f:
        f.seek(1 << 20)
        b = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([b[0] ^ 0xFF]))
    start = time.monotonic()
    out = invoke(env, "restore", "--script", str(HELLO), "--image", str(copy), timeout=600)
    assert out.returncode == 14
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the one checkpoint 'default' was taken with" in lines[0]
    assert time.monotonic() - start < 120



def test_kvm_boot_is_refused_within_a_minute_where_kvm_cannot_run_a_guest(env: dict[str, str], gem5_world: dict[str, Path], checkpoint_dir: Path, engine, tools) -> None:  # type: ignore[no-untyped-def]
    from hackback.services import accel
    from hackback.store.layout import Layout

    work = gem5_world["work"]
    img = work / "images" / "default" / "vmlinuz"
    works, _why = accel.kvm_runs_guests(engine, Layout(work), tools.ref, tools.versions.get("qemu", ""), img)
    if works:
        pytest.skip("KVM runs guests on this host: the refusal does not apply (and a KVM boot would replace the checkpoint)")
    before = digests([checkpoint_dir])
    start = time.monotonic()
    out = invoke(env, "checkpoint", "--cpu", "kvm", timeout=600)
    assert time.monotonic() - start < 60
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "KVM cannot run a guest here" in lines[0]
    assert digests([checkpoint_dir]) == before


def test_the_pointer_chase_measures_its_region_of_interest_from_payloads(restores) -> None:  # type: ignore[no-untyped-def]
    roi = {}
    for inputs, ws in (("l1", 16384), ("beyond", 1048576)):
        out, run = restores[f"chase-{inputs}"]
        assert out.returncode == 0 and run is not None, out.stdout[-3000:] + out.stderr
        console = (run / "console.log").read_text(errors="replace")
        assert "HACKBACK-PAYLOAD unpacked into /root/payload" in console and f"working_set_bytes={ws}" in console
        rec = Manifest.read(run).parts["run"]  # type: ignore[union-attr]
        result = (run / "results" / f"chase-{ws}.txt").read_text()
        assert result.startswith(f"working_set_bytes={ws} ") and f"results/chase-{ws}.txt" in rec["outputs"]
        info = rec["info"]
        assert info["payload"]["files"] == 2 and "roi" in info, info.keys()
        # The ROI's dump read independently: the run script dumps at workbegin (1) and workend (2).
        dump = info["roi"]["dump"]
        raw = stats_of(run, dump)
        miss = float(raw["board.cache_hierarchy.l1d-cache-0.overallMissRate::total"])
        assert abs(miss - info["roi"]["l1d_miss_rate"]) < 1e-9
        insts = float(raw["board.processor.cores.core.commitStats0.numInsts"])  # committed in the ROI alone
        assert insts == info["roi"]["insts"] and info["stats"]["insts"] > insts  # the whole run is more
        roi[inputs] = (insts, miss)
        print(f"chase {inputs}: ROI {insts:.0f} instructions, L1D miss rate {miss:.4f}, IPC {info['roi'].get('ipc', 0):.3f}")
    assert roi["beyond"][1] > 10 * roi["l1"][1] and roi["beyond"][1] > 0.3, roi
    # Twice the steps, about twice the instructions: a little more, since the slow ROI
    # (every step a miss) takes more timer interrupts, whose kernel instructions count too.
    ratio = roi["beyond"][0] / roi["l1"][0]
    assert 1.8 < ratio < 2.5, f"ROI instructions should scale with the steps asked (40000 vs 20000): {ratio:.2f}"


def test_a_restore_runs_on_atomic_until_the_guests_marker_then_on_o3(restores) -> None:  # type: ignore[no-untyped-def]
    """The chase switching at its m5 workbegin: before it only the atomic cores
    (board.processor.cores) commit, from it only the o3 ones (switch); its ROI is
    the plain o3 run's, less the warm-up when there is one; after workend the run
    is back on atomic."""
    plain = restores["chase-l1"][1]
    assert plain is not None
    plain_roi = info_of(plain, "run")["roi"]["insts"]
    rois = {}
    for tag in ("", "-warm"):
        out, run = restores[f"chase-switch{tag}"]
        assert out.returncode == 0 and run is not None, out.stdout[-3000:] + out.stderr
        assert "on atomic-to-o3 CPU" in out.stdout and "AtomicSimpleCPU" in (run / "config.ini").read_text()
        info = info_of(run, "run")
        kinds = [p["ended_by"] for p in info["parts"]]
        assert kinds == ["workbegin", *(["warmup-end"] if tag else []), "workend", "end"], kinds
        before, roi, after = stats_of(run, 1), stats_of(run, info["roi"]["dump"]), stats_of(run, len(kinds))
        atomic, o3 = "board.processor.cores.core.commitStats0.numInsts", "board.processor.switch.core.commitStats0.numInsts"
        assert float(before[atomic]) > 1_000_000 and float(before.get(o3, 0)) == 0, (before.get(atomic), before.get(o3))
        assert float(roi[o3]) == info["roi"]["insts"] and float(roi.get(atomic, 0)) <= 1
        assert float(after[atomic]) > 100_000 and float(after.get(o3, 0)) < 10, "after workend the run is on atomic again"
        rois[tag] = info["roi"]["insts"]
        print(f"switching chase{tag}: atomic {float(before[atomic]):.0f} insts in {before['hostSeconds']} host s, "
              f"ROI on o3 {info['roi']['insts']:.0f} insts in {roi['hostSeconds']} host s; whole run {info['host_seconds']:.1f} s")
    assert abs(rois[""] - plain_roi) <= 16, (rois, plain_roi)  # the same ROI as on o3 from the start
    assert abs(rois["-warm"] - (plain_roi - WARMUP)) <= 16, (rois, plain_roi)  # less the warm-up


def test_a_restore_switches_after_n_instructions_and_refuses_a_switch_that_never_came(restores) -> None:  # type: ignore[no-untyped-def]
    out, run = restores["switch-after"]
    assert out.returncode == 0 and run is not None, out.stdout[-3000:] + out.stderr
    first, rest = stats_of(run, 1), stats_of(run, 2)
    assert SWITCH_AFTER <= float(first["board.processor.cores.core.commitStats0.numInsts"]) <= SWITCH_AFTER + 100
    assert float(rest["board.processor.switch.core.commitStats0.numInsts"]) > 1_000_000
    assert "BaseTimingSimpleCPU" in (run / "config.ini").read_text()
    assert info_of(run, "run")["switch"]["after_insts"] == SWITCH_AFTER
    out, _ = restores["never-switched"]
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "never switched to the timing CPU" in lines[0] and "m5 workbegin" in lines[0], lines
    out, _ = restores["warmup-too-long"]
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and "nothing was measured" in lines[0] and "warmup_insts" in lines[0], lines


def test_the_report_tables_and_plots_the_runs_as_their_stats_txt_says(restores, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import csv

    out = invoke(env, "report", "--checkpoint", "default", "--out", str(tmp_path / "report"), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    rep = tmp_path / "report"
    rows = {r["run"]: r for r in csv.DictReader((rep / "runs.csv").open())}
    md = (rep / "runs.md").read_text()
    pngs = sorted(p.name for p in rep.glob("*.png"))
    assert "ipc_by_script.png" in pngs and any(p.startswith("default-run-o3-l1l2_vs_payload") for p in pngs), pngs
    assert all((rep / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for name in ("chase-l1", "chase-beyond", "atomic"):
        run = restores[name][1]
        assert run is not None and run.name in rows and run.name in md
        row = rows[run.name]
        n = (run / "stats.txt").read_text().count("---------- Begin")
        per_dump = [stats_of(run, d) for d in range(1, n + 1)]
        insts = sum(float(v) for d in per_dump for k, v in d.items() if k.endswith("commitStats0.numInsts"))
        assert float(row["insts"]) == pytest.approx(insts, rel=1e-5), (name, row["insts"], insts)
        if name.startswith("chase"):
            roi = stats_of(run, info_of(run, "run")["roi"]["dump"])
            assert float(row["roi_insts"]) == float(roi["board.processor.cores.core.commitStats0.numInsts"])
            assert float(row["roi_l1d_miss_rate"]) == pytest.approx(
                float(roi["board.cache_hierarchy.l1d-cache-0.overallMissRate::total"]), rel=1e-5)
        else:  # no caches and no ROI: missing, not 0
            assert row["l1d_miss_rate"] == "" and row["roi_insts"] == "", row


def test_your_own_gem5_config_runs_under_hackbacks_run_management(env: dict[str, str], checkpoint_dir: Path,
                                                                   tmp_path: Path) -> None:
    """A copy of configs/hackback_fs.py whose L2 is 256 KiB, through --gem5-config,
    with gem5's own debug options passed through: the stats and config show that
    L2, the trace is in the run directory, the config's digest is a run input."""
    mine = tmp_path / "my_fs.py"
    text = (REPO / "configs" / "hackback_fs.py").read_text()
    assert "l2_size=args.l2)" in text
    mine.write_text(text.replace("l2_size=args.l2)", 'l2_size="256KiB")'))
    out = invoke(env, "restore", "--script", str(HELLO), "--caches", "l1l2", "--gem5-config", str(mine),
                 "--gem5-args=--debug-flags=PseudoInst", "--gem5-args=--debug-file=trace.out", "--force", timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    m = re.search(r"^run (\S+?)(?: \(|:)", out.stdout, re.M)
    assert m, out.stdout[-2000:]
    run = checkpoint_dir.parent.parent / "runs" / m.group(1)
    ini = (run / "config.ini").read_text()
    l2 = ini[ini.index("[board.cache_hierarchy.l2-cache-0]"):]
    assert re.search(r"^size=262144$", l2[:l2.index("\n[", 1)], re.M), "the L2 is the copy's 256 KiB"
    assert "board.cache_hierarchy.l2-cache-0.overallMissRate::total" in stats_of(run)
    assert "pseudo_inst::readfile" in (run / "trace.out").read_text()
    rec = Manifest.read(run).parts["run"]  # type: ignore[union-attr]
    assert rec["inputs"]["gem5_config"] == str(mine) and "trace.out" in rec["outputs"]
    from hackback.services import gem5run

    assert rec["inputs"]["run_script_sha256"] == gem5run.run_script_sha256(mine) != gem5run.run_script_sha256()


def test_a_gem5_killed_after_its_ok_result_fails_the_run_in_one_line(env: dict[str, str], checkpoint_dir: Path,
                                                                      tmp_path: Path) -> None:
    """Real gem5: a copy of the run script that writes its ok result and then kills
    its own process, so gem5's exit-time stats dump (an atexit hook) never runs.
    An ok result is not a finished run: the restore fails in one line, no run kept."""
    mine = tmp_path / "dies_fs.py"
    text = (REPO / "configs" / "hackback_fs.py").read_text()
    anchor = "    write_result(run.outdir, result)\n"
    assert anchor in text
    mine.write_text(text.replace(anchor, anchor + "    os.kill(os.getpid(), 9)  # before gem5's own final stats dump\n"))
    script = tmp_path / "fine.sh"
    script.write_text(f"#!/bin/sh\necho all fine {time.time_ns()}\n")
    out = invoke(env, "restore", "--script", str(script), "--gem5-config", str(mine), timeout=1800)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 13 and len(lines) == 1, out.stdout[-2000:] + out.stderr
    assert "gem5 exited 137 (killed by signal 9) after the run ended as expected" in lines[0], lines
    assert not list((checkpoint_dir.parent.parent / "runs").glob("default-fine-*")), "no run is kept as if complete"


def test_a_config_outside_hackback_obtains_our_artifacts_through_the_exported_json(env: dict[str, str], checkpoint_dir: Path,
                                                                                    engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """examples/resources/obtain_and_restore.py, a stdlib config of a researcher's
    own, in the env image with GEM5_RESOURCE_JSON: it obtains the workload (kernel,
    disk, checkpoint) and each resource again (the md5 check), restores at the
    checkpoint's tick and the guest runs the script. Then with the resource
    directory seeded by the export (sparse): gem5 copies nothing."""
    from hackback.base.engine import Mount, RunSpec

    seeded = tmp_path / "seeded"
    out = invoke(env, "export", "--resource-dir", str(seeded), timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    exported = checkpoint_dir.parent.parent / "exports" / "default"
    entries = {e["id"]: e for e in __import__("json").loads((exported / "resources.json").read_text())}
    assert entries["hackback-default-checkpoint"]["is_tar_archive"] is True
    assert entries["hackback-default-disk-image"]["root_partition"] == "1"
    assert all(e["gem5_versions"] == ["24.0"] and e["resource_version"] for e in entries.values())
    disk = seeded / "hackback-default-disk-image"
    assert disk.stat().st_blocks * 512 < disk.stat().st_size / 2, "the seeded disk image is sparse"
    tick = info_of(checkpoint_dir, "checkpoint")["tick"]
    work = checkpoint_dir.parent.parent.resolve()
    for label, resources in (("cold", tmp_path / "cold"), ("seeded", seeded)):
        m5out = tmp_path / f"m5out-{label}"
        m5out.mkdir()
        resources.mkdir(exist_ok=True)
        lines: list[str] = []
        status = engine.run(RunSpec(
            info_of(checkpoint_dir, "checkpoint")["gem5"]["env_image"],
            ["/opt/hackback/bin/gem5.opt", "--outdir", "/m5out", "/ex/resources/obtain_and_restore.py", "--script", "/ex/hello.rcS"],
            step="t-obtain", network="none", kvm=False,
            mounts=[Mount(work, str(work)), Mount(REPO / "examples", "/ex"), Mount(m5out, "/m5out", read_only=False),
                    Mount(resources, "/resources", read_only=False)],
            environment={"GEM5_RESOURCE_JSON": str(exported / "resources.json"), "GEM5_RESOURCE_DIR": "/resources"}),
            on_line=lines.append, check=False)
        text = "\n".join(lines)
        assert status == 0, text[-3000:]
        copies = text.count("is being copied")
        assert copies == (3 if label == "cold" else 0), (label, text[-3000:])  # once each; the second obtain checks the md5
        assert f"restored at tick {tick}" in text and "m5_exit instruction encountered" in text, text[-2000:]
        console = (m5out / "board.pc.com_1.device").read_text(errors="replace")
        assert "HACKBACK-RESTORED" in console and "HACKBACK-SCRIPT-EXIT 0" in console, console[-1500:]
        if label == "cold":
            copied = resources / "hackback-default-disk-image"
            print(f"gem5's own copy of the disk image: {copied.stat().st_blocks * 512 / 2**30:.2f} GiB on disk "
                  f"(ours {Path(entries['hackback-default-disk-image']['url'][7:]).stat().st_blocks * 512 / 2**30:.2f} GiB)")
            shutil.rmtree(resources)


def test_under_a_pseudo_terminal_restores_show_bars_and_under_ci_plain_lines(env: dict[str, str], checkpoint_dir: Path,
                                                                               tmp_path: Path) -> None:
    import shlex

    scripts = []
    for name in ("bar-a", "bar-b"):
        scripts += ["--script", str(tmp_path / f"{name}.sh")]
        (tmp_path / f"{name}.sh").write_text(f"#!/bin/sh\necho {name} {time.time_ns()}\n")
    cmd = shlex.join([sys.executable, "-m", "invoke", "restore", *scripts, "--jobs", "2"])
    terminal = {k: v for k, v in env.items() if k != "CI"} | {"TERM": "xterm", "COLUMNS": "150"}
    out = subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=REPO, env=terminal, capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "2 restores" in out.stdout and "━" in out.stdout and "2/2 runs" in out.stdout, out.stdout[-3000:]
    plain = invoke({**env, "CI": "true"}, "restore", *scripts, "--jobs", "2", "--force", timeout=1800)
    assert plain.returncode == 0 and "━" not in plain.stdout and "\r" not in plain.stdout, plain.stdout[-2000:]
    # Plain lines: the batch, each run's step opening and closing, and no bar.
    assert "2 restores, 2 at a time" in plain.stdout, plain.stdout[-2000:]
    for name in ("bar-a", "bar-b"):
        assert re.search(rf"^==> restore \S+: {name}\.sh on atomic CPU$", plain.stdout, re.M), plain.stdout[-2000:]
        assert re.search(rf"^<== restore \S+: {name}\.sh on atomic CPU \(", plain.stdout, re.M), plain.stdout[-2000:]


@pytest.fixture(scope="module")
def layer(env: dict[str, str], checkpoint_dir: Path) -> dict[str, Any]:
    """examples/layer: an image with a user layer (a package, a file, a script),
    its own checkpoint, and a restore that uses them. Its env, kernel and base
    are the default ones' twins (linked, not rebuilt)."""
    cpt = invoke(env, "checkpoint", "--config", str(LAYER / "hackback.toml"))
    assert cpt.returncode == 0, cpt.stdout[-4000:] + cpt.stderr
    run = invoke(env, "restore", "--config", str(LAYER / "hackback.toml"), "--script", str(LAYER / "use.sh"), "--force")
    return {"checkpoint": cpt, "restore": run}


def test_an_image_layer_is_built_on_the_base_and_a_restore_uses_it(layer: dict[str, Any], gem5_world: dict[str, Path]) -> None:
    out = layer["checkpoint"].stdout
    # The base is never rebuilt for the layer: linked from images/default's (first run), or
    # already there (a kept work dir, where only a stale layer part is built again).
    assert "image stage 1" not in out and "image stage 2" not in out, out[-3000:]
    base = Manifest.read(gem5_world["work"] / "images" / "layer").parts["base"]  # type: ignore[union-attr]
    assert base["info"]["linked_from"] == str(gem5_world["image"]), base["info"].get("linked_from")
    run = layer["restore"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    m = re.search(r"^run (\S+?)(?: \(|:)", run.stdout, re.M)
    assert m, run.stdout[-2000:]
    console = (gem5_world["work"] / "runs" / m.group(1) / "console.log").read_text(errors="replace")
    for line in ("bc says 2^10 = 1024", "hello from a file baked into the image", "setup.sh ran at image build time",
                 "at build time bc gave 1048576"):
        assert line in console, console[-2000:]
    info = info_of(gem5_world["work"] / "images" / "layer", "image")
    assert info["user_layer"]["user_packages"] == ["bc"] and len(info["user_layer"]["user_scripts"]) == 1
    assert info["user_layer"]["user_scripts"][0]["sha256"] == HashCache.sha256_uncached(LAYER / "setup.sh")


def test_changing_only_a_user_script_rebuilds_only_the_layer(layer, env: dict[str, str], gem5_world: dict[str, Path],  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    import shutil

    changed = tmp_path / "layer"
    shutil.copytree(LAYER, changed)
    (changed / "hackback.toml").write_text((changed / "hackback.toml").read_text().replace('name = "layer"', 'name = "layer-changed"'))
    with open(changed / "setup.sh", "a") as f:
        f.write(f"echo changed {time.time()} >> /opt/hackback-example/setup-ran\n")  # new each run: a real rebuild
    start = time.monotonic()
    out = invoke(env, "image", "--config", str(changed / "hackback.toml"))
    seconds = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    # The base is linked from the other images' (first run) or up to date (later runs): never built again.
    assert "image stage 1" not in out.stdout and "provisioning the base" not in out.stdout, out.stdout[-3000:]
    assert "stage 3" in out.stdout and "user layer (1 package(s), 1 file(s), 1 script(s))" in out.stdout
    print(f"user script changed: image rebuilt (layer only) in {seconds:.0f} s")
    # The layer checkpoint does not take the changed image: refused in one line.
    refused = invoke(env, "restore", "--config", str(LAYER / "hackback.toml"), "--script", str(LAYER / "use.sh"),
                     "--image", str(gem5_world["work"] / "images" / "layer-changed" / "disk.img"), timeout=600)
    assert refused.returncode == 14
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the one checkpoint 'layer' was taken with" in lines[0], lines


@pytest.fixture(scope="module")
def child(env: dict[str, str], checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A restore whose set-up script ends in hackback-checkpoint, saved as the child
    checkpoint 'roi'; then two restores of the child on o3 with different scripts."""
    tmp = tmp_path_factory.mktemp("child")
    setup = tmp / "setup.sh"
    setup.write_text("#!/bin/sh\necho setting up\necho warmed > /root/set-up-state\nhackback-checkpoint\n")
    made = invoke(env, "restore", "--script", str(setup), "--save-checkpoint", "roi", timeout=1800)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr
    roi = checkpoint_dir.parent / "roi"
    scripts = {}
    for name, body in (("measure-a", 'echo "a sees $(cat /root/set-up-state)"'), ("measure-b", "echo b ran; uname -r")):
        scripts[name] = tmp / f"{name}.sh"
        scripts[name].write_text(f"#!/bin/sh\n{body}\n")

    def one(name: str) -> subprocess.CompletedProcess[str]:
        return invoke(env, "restore", "--checkpoint", str(roi), "--script", str(scripts[name]), "--cpu", "o3", "--force",
                      timeout=3600)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(scripts, pool.map(one, scripts)))
    return {"made": made, "dir": roi, "runs": runs, "scripts": scripts}


def test_a_child_checkpoint_serves_restores_on_o3_and_the_listing_shows_its_lineage(child: dict[str, Any],
                                                                                    env: dict[str, str]) -> None:
    info = info_of(child["dir"], "checkpoint")
    assert info["parent"]["name"] == "default" and info["made_by"]["cpu"] == "atomic" and info["tick"] > 0
    assert info["made_by"]["script"]["sha256"] and (child["dir"] / info["cpt"] / "m5.cpt").is_file()
    parent = info_of(child["dir"].parent / "default", "checkpoint")
    assert info["tick"] > parent["tick"] and info["image"] == parent["image"] and info["kernel"] == parent["kernel"]
    for name, says in (("measure-a", "a sees warmed"), ("measure-b", "b ran")):
        out = child["runs"][name]
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr
        m = re.search(r"^run (\S+?)(?: \(|:)", out.stdout, re.M)
        assert m and m.group(1).startswith("roi-"), out.stdout[-1000:]
        run = child["dir"].parent.parent / "runs" / m.group(1)
        console = (run / "console.log").read_text(errors="replace")
        assert says in console and "HACKBACK-SCRIPT-EXIT 0" in console and "setting up" not in console
        assert "BaseO3CPU" in (run / "config.ini").read_text() and float(stats_of(run)["simInsts"]) > 0
    listing = invoke(env, "checkpoints")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("default "))
    # runs: 2 or more (a kept work dir holds older runs of the child too, from another run script)
    assert any(ln.strip().startswith("└─ roi") and "setup.sh on atomic" in ln and int(ln.rsplit("runs: ", 1)[1]) >= 2
               for ln in lines[at + 1:] if "runs: " in ln), lines


def test_a_child_whose_parents_image_changed_is_refused(child: dict[str, Any], env: dict[str, str], checkpoint_dir: Path,
                                                        tmp_path: Path) -> None:
    info = info_of(checkpoint_dir, "checkpoint")
    copy = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", info["image"]["path"], str(copy)], check=True)
    with open(copy, "r+b") as f:
        f.seek(2 << 20)
        f.write(b"\xff")
    out = invoke(env, "restore", "--checkpoint", str(child["dir"]), "--script", str(child["scripts"]["measure-b"]),
                 "--image", str(copy), timeout=600)
    assert out.returncode == 14
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the one checkpoint 'roi' was taken with" in lines[0], lines


def test_checkpoint_image_and_kernel_are_unchanged_after_every_restore(restores, child, checkpoint_dir: Path,  # type: ignore[no-untyped-def]
                                                                       watched: dict[str, str]) -> None:
    """Last: after the restores, the payload runs and the child checkpoint (a restore that saves one)."""
    info = info_of(checkpoint_dir, "checkpoint")
    paths = [checkpoint_dir / info["cpt"], Path(info["image"]["path"]), Path(info["kernel"]["path"])]
    assert digests(paths) == watched



def test_a_two_core_checkpoint_restores_on_timing_with_both_cores_busy(env: dict[str, str], checkpoint_dir: Path,
                                                                        tmp_path: Path) -> None:
    """checkpoint.cores = 2 through boot, checkpoint and a restore on the timing CPU;
    the run's figures add up every core's (gem5 numbers them cores0, cores1)."""
    cpt = invoke(env, "checkpoint", "--name", "smp", "--cores", "2")
    assert cpt.returncode == 0, cpt.stdout[-3000:] + cpt.stderr
    assert info_of(checkpoint_dir.parent / "smp", "checkpoint")["board"]["cores"] == 2
    busy = tmp_path / "busy.sh"
    busy.write_text("#!/bin/sh\nbusy() {\n    i=0\n    while [ $i -lt 300 ]; do i=$((i+1)); done\n"
                    "    read -r line < /proc/self/stat\n    set -- $line\n    echo \"busy done on CPU ${39}\"\n}\n"
                    "busy &\nbusy &\nwait\n")
    out = invoke(env, "restore", "--name", "smp", "--script", str(busy), "--cpu", "timing", "--force", timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    m = re.search(r"^run (\S+?)(?: \(|:)", out.stdout, re.M)
    assert m, out.stdout[-2000:]
    run = checkpoint_dir.parent.parent / "runs" / m.group(1)
    console = (run / "console.log").read_text(errors="replace")
    assert "busy done on CPU 0" in console and "busy done on CPU 1" in console, console[-1000:]
    raw = stats_of(run)
    per_core = [float(raw[f"board.processor.cores{i}.core.commitStats0.numInsts"]) for i in (0, 1)]
    assert all(n > 100_000 for n in per_core), per_core
    assert info_of(run, "run")["stats"]["insts"] == sum(per_core)
    assert "BaseTimingSimpleCPU" in (run / "config.ini").read_text()


def test_two_cores_switch_to_o3_and_save_a_child_that_restores(env: dict[str, str], checkpoint_dir: Path,
                                                               tmp_path: Path) -> None:
    """The 2-core checkpoint: atomic for a count, then o3 on both cores (switch0,
    switch1), a child saved at the end (taken back on the starting cores), and
    that child restored plainly."""
    busy = tmp_path / "busy-then-save.sh"
    busy.write_text("#!/bin/sh\nbusy() {\n    i=0\n    while [ $i -lt 200 ]; do i=$((i+1)); done\n    echo \"busy $1 done\"\n}\n"
                    "busy a &\nbusy b &\nwait\nhackback-checkpoint\necho \"after the child: $(nproc) cores\"\n")
    made = invoke(env, "restore", "--name", "smp", "--script", str(busy), "--cpu", "o3", "--switch-from", "atomic",
                  "--switch-after-insts", "100000", "--save-checkpoint", "smp-o3-child", "--force", timeout=3600)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr
    child = checkpoint_dir.parent / "smp-o3-child"
    info = info_of(child, "checkpoint")
    assert info["made_by"]["switch_from"] == "atomic" and info["made_by"]["cpu"] == "o3" and info["board"]["cores"] == 2
    sections = (child / info["cpt"] / "m5.cpt").read_text(errors="replace")
    # Thread state (xc) under the starting cores, where a plain restore reads it; the switched-out o3 cores have empty sections.
    assert "[board.processor.cores1.core.xc.0]" in sections and "[board.processor.switch1.core.xc.0]" not in sections
    on_o3 = stats_of(child, 2)  # dump 1 ends at the switch; 2 is o3's, to the child checkpoint
    per_core = [float(on_o3.get(f"board.processor.switch{i}.core.commitStats0.numInsts", 0)) for i in (0, 1)]
    assert all(n > 10_000 for n in per_core), per_core
    again = invoke(env, "restore", "--checkpoint", str(child), "--script", str(HELLO), "--force", timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    m = re.search(r"^run (\S+?)(?: \(|:)", again.stdout, re.M)
    assert m, again.stdout[-2000:]
    run = checkpoint_dir.parent.parent / "runs" / m.group(1)
    raw = stats_of(run)
    assert all(float(raw.get(f"board.processor.cores{i}.core.commitStats0.numInsts", 0)) > 0 for i in (0, 1)), raw.get("simInsts")


def test_three_restores_run_as_a_slurm_job_array_and_a_rerun_submits_nothing(env: dict[str, str], checkpoint_dir: Path,
                                                                            slurm_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`invoke restore --on slurm --wait` with real gem5 on the single-node cluster:
    three runs (one failing with exit 3) as one array, their summaries, the
    failing one's status; a rerun submits nothing, a removed run alone is submitted."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    nonce = time.time_ns()  # new runs on each CI run (the work dir is kept)
    for name, body in (("one", "echo one on the cluster"), ("two", "uname -r"), ("fails", "echo failing; exit 3")):
        (scripts / f"{name}.sh").write_text(f"#!/bin/sh\n# {nonce}\n{body}\n")
    cluster_env = {**env, "SLURM_CONF": str(slurm_cluster.conf)}
    args = ("restore", "--on", "slurm", "--wait", "--script", str(scripts))
    out = invoke(cluster_env, *args, timeout=1800)
    assert out.returncode == 3, out.stdout[-3000:] + out.stderr
    assert "3 to submit" in out.stdout and "submitted Slurm job" in out.stdout and "3 runs:" in out.stdout, out.stdout[-3000:]
    assert out.stdout.count("script exit status 0") == 2 and "script exit status 3" in out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "fails.sh exited 3 in the guest" in lines[0], lines
    rids = re.findall(r"^run (\S+?):", out.stdout, re.M)
    assert len(rids) == 3
    runs = checkpoint_dir.parent.parent / "runs"
    one = next(r for r in rids if "-one-" in r)
    assert "one on the cluster" in (runs / one / "console.log").read_text(errors="replace")
    again = invoke(cluster_env, *args, timeout=600)
    assert again.returncode == 3 and "3 done already" in again.stdout and "0 to submit" in again.stdout, again.stdout[-2000:]
    import shutil

    shutil.rmtree(runs / one)
    third = invoke(cluster_env, *args, timeout=1800)
    assert third.returncode == 3 and "2 done already" in third.stdout and "1 to submit" in third.stdout, third.stdout[-2000:]
    assert (runs / one / "manifest.json").is_file()


def _quickstart() -> list[str]:
    """The lines of docs/getting-started.md's quickstart block, as a newcomer pastes them."""
    text = (REPO / "docs" / "getting-started.md").read_text()
    block = text.split("<!-- quickstart", 1)[1].split("<!-- /quickstart -->", 1)[0]
    return [ln.strip() for ln in block.split("```sh", 1)[1].split("```", 1)[0].splitlines() if ln.strip()]


def test_the_quickstart_runs_as_written_and_gets_to_the_rois_ipc(restores, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Each line of the getting-started quickstart, run from the repo as written
    (`hackback` as the installed command's entry point): every one exits 0, the
    restore prints the ROI's IPC, and the report has the run as its stats.txt says."""
    lines = _quickstart()
    assert [ln.split()[:2] for ln in lines] == [["hackback", "checkpoint"], ["sh", "examples/pointer-chase/build.sh"],
                                                 ["hackback", "restore"], ["hackback", "report"]], lines
    outs = []
    for line in lines:
        words = line.split()
        if words[0] == "hackback":
            out = invoke(env, *words[1:], timeout=3600)
        else:
            out = subprocess.run(words, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (line, out.stdout[-3000:] + out.stderr)
        outs.append(out.stdout)
    # Another test may have made the same run already: then it is reported, not rerun.
    m = re.search(r"^run (\S+)(?: \(up to date, not rerun\))?: script exit status 0; .*region of interest: instructions=(\d+), IPC=([\d.]+)", outs[2], re.M)
    assert m, outs[2][-3000:]
    info = info_of(Path(env["HACKBACK_WORK_DIR"]) / "runs" / m.group(1), "run")
    assert info["roi"]["insts"] == int(m.group(2)) and info["board"]["cpu"] == "o3", info
    wrote = re.search(r"wrote (\S+/runs\.csv)$", outs[3], re.M)
    assert wrote, outs[3][-2000:]
    import csv

    rows = {r["run"]: r for r in csv.DictReader(open(wrote.group(1)))}
    assert float(rows[m.group(1)]["roi_insts"]) == info["roi"]["insts"], rows.get(m.group(1))
    print(f"quickstart: ROI {m.group(2)} instructions, IPC {m.group(3)} ({m.group(1)})")
