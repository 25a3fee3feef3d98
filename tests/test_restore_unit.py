"""Restore and gem5-run pieces that need nothing: script checks, run ids, the
gem5 command line and mounts, how endings are described, stats parsing."""
from __future__ import annotations


from pathlib import Path

import pytest

from conftest import result_of
from hackback.store.records import Board, RunResult, ScriptStatus
from hackback.steps import checkpoint, restore
from hackback.services import gem5run, kernel_config
from hackback.base.errors import ScriptFailed, UsageError


def test_scripts_from_takes_files_and_directories_and_refuses_bad_ones(tmp_path: Path) -> None:
    d = tmp_path / "suite"
    d.mkdir()
    for name in ("b.rcS", "a.sh", "notes.txt"):
        (d / name).write_text("echo hi\n")
    one = tmp_path / "one.rcS"
    one.write_text("echo one\n")
    assert restore.scripts_from([str(one), str(d)]) == [one, d / "a.sh", d / "b.rcS"]
    with pytest.raises(UsageError, match="no script given"):
        restore.scripts_from([])
    with pytest.raises(UsageError, match="named twice"):
        restore.scripts_from([str(one), str(one)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no"):
        restore.scripts_from([str(empty)])
    latin = tmp_path / "latin.rcS"
    latin.write_bytes(b"echo caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        restore.check_script(latin)


def test_run_id_names_the_script_and_cpu_and_changes_with_any_input(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class Cpt:
        name = "default"

    s = tmp_path / "my bench!.rcS"
    atomic = Board("2GiB", 1, "atomic")
    a = restore.run_id(Cpt(), s, atomic, {"script_sha256": "1"})  # type: ignore[arg-type]
    b = restore.run_id(Cpt(), s, atomic, {"script_sha256": "2"})  # type: ignore[arg-type]
    assert a.startswith("default-my_bench_-atomic-") and a != b
    cached = Board("2GiB", 1, "atomic", caches="l1l2", l1d="32KiB", l1i="32KiB", l2="512KiB")
    assert restore.run_id(Cpt(), s, cached, {}).startswith("default-my_bench_-atomic-l1l2-")  # type: ignore[arg-type]
    switching = Board("2GiB", 1, "o3", switch_from="atomic")
    assert restore.run_id(Cpt(), s, switching, {}).startswith("default-my_bench_-atomic-to-o3-")  # type: ignore[arg-type]


def test_gem5_command_mounts_every_input_read_only(tmp_path: Path) -> None:
    job = gem5run.Gem5Job(
        label="t", env_image="env", binary="/opt/hackback/bin/gem5.opt", mode="restore",
        kernel=tmp_path / "vmlinux", disk=tmp_path / "disk.img", kernel_args="console=ttyS0 root=PARTUUID=x-01",
        board=Board("2GiB", 1, "timing", caches="l1l2"), out=tmp_path / "out",
        checkpoint=tmp_path / "cpt.123", script=tmp_path / "s.rcS",
    )
    cmd = gem5run.command(job)
    assert cmd[:3] == ["/opt/hackback/bin/gem5.opt", "--outdir", gem5run.OUT_MNT]
    assert cmd[cmd.index("--kernel-args") + 1] == "console=ttyS0 root=PARTUUID=x-01"
    assert cmd[cmd.index("--checkpoint") + 1].endswith("/cpt.123")
    assert cmd[cmd.index("--cpu") + 1] == "timing" and cmd[cmd.index("--caches") + 1] == "l1l2"
    writable = [m.container for m in gem5run.mounts(job) if not m.read_only]
    assert writable == [gem5run.OUT_MNT]


def test_endings_are_described_in_words() -> None:
    r = result_of(cause="max-wall-seconds", expected="checkpoint", ok=False)
    text = gem5run.describe_ending(r)
    assert "wall-clock limit" in text and "expected a checkpoint" in text and "1.500 simulated s" in text
    panic = result_of(cause="kernel-panic", expected="exit", ok=False, panic_line="Kernel panic - not syncing: VFS")
    assert "Kernel panic - not syncing: VFS" in gem5run.describe_ending(panic)


def test_kernel_args_find_root_by_partuuid_and_fast_boot_adds_init(make_config) -> None:  # type: ignore[no-untyped-def]
    class Img:
        partuuid = "deadbeef-01"

    fast = checkpoint.kernel_args(make_config(), Img())  # type: ignore[arg-type]
    full = checkpoint.kernel_args(make_config(checkpoint__boot="full", checkpoint__kernel_args="quiet"), Img())  # type: ignore[arg-type]
    assert "root=PARTUUID=deadbeef-01" in fast and "console=ttyS0" in fast and "init=/sbin/hackback-fastinit" in fast
    assert "init=" not in full and full.endswith("quiet")


def test_timing_constants_follow_the_board_clock_and_the_kernel_hz(make_config) -> None:  # type: ignore[no-untyped-def]
    class Img:
        partuuid = "deadbeef-01"

    KT = checkpoint.KernelTiming
    derived = checkpoint.timing(make_config(), KT(1000))
    assert derived.lpj == 3_000_000 and "tsc_early_khz=3000000" in derived.args and "no_timer_check" in derived.args
    assert derived.lapic_timer_period is None  # only for a kernel with hackback's patch
    assert checkpoint.timing(make_config(), KT(250)).lpj == 12_000_000
    # gem5's LAPIC counts the 3 GHz core clock / 16: 187500 ticks per 1 ms jiffy.
    assert "lapic_timer_period=187500" in checkpoint.timing(make_config(), KT(1000, lapic_param=True)).args
    assert "lpj=3000000" in checkpoint.kernel_args(make_config(), Img(), KT(1000))  # type: ignore[arg-type]
    # The baseline, and a kernel whose HZ is unknown (a prebuilt vmlinux): X86Board's own value.
    assert checkpoint.timing(make_config(checkpoint__timing="x86board"), KT(1000, True)).args == ("lpj=7999923",)
    assert checkpoint.timing(make_config(), KT(None)).mode == "x86board"
    assert kernel_config.hz("CONFIG_HZ_1000=y\nCONFIG_HZ=1000\n") == 1000 and kernel_config.hz("") is None


def test_a_crlf_script_is_refused_before_anything_runs(tmp_path: Path) -> None:
    s = tmp_path / "dos.rcS"
    s.write_bytes(b"#!/bin/sh\r\necho hi\r\n")
    with pytest.raises(UsageError, match="CRLF"):
        restore.check_script(s)


def test_a_too_large_script_is_refused_naming_the_limit(tmp_path: Path) -> None:
    s = tmp_path / "big.rcS"
    s.write_text("#!/bin/sh\n" + "# padding padding padding\n" * 44000)  # ~1.1 MiB of text
    with pytest.raises(UsageError, match=r"MiB, over the 1 MiB limit"):
        restore.check_script(s)


def test_a_script_that_calls_m5_exit_itself_ends_normally(tmp_path: Path) -> None:
    r = RunResult("default-x-atomic-1", tmp_path, "exit", ScriptStatus.parse(None), 0.01, 1.0, {})
    assert restore._finish(r, tmp_path / "x.rcS") is r
    assert "ended the simulation itself" in r.summary()
    failed = RunResult("default-x-atomic-1", tmp_path, "exit", ScriptStatus.parse("3"), 0.01, 1.0, {})
    with pytest.raises(ScriptFailed, match="exited 3") as e:
        restore._finish(failed, tmp_path / "x.rcS")
    assert e.value.exit_code == 3


def test_a_restore_ends_by_default_and_the_limit_message_says_how_to_lift_it(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert make_config().restore.max_wall_seconds > 0  # a script that never ends does not run forever
    job = gem5run.Gem5Job(
        label="t", env_image="env", binary="gem5.opt", mode="restore", kernel=tmp_path / "k", disk=tmp_path / "d",
        kernel_args="", board=Board("2GiB", 1, "atomic"), out=tmp_path, max_wall_seconds=14400,
    )
    hint = gem5run._hint(result_of(cause="max-wall-seconds", ok=False, console_last_line="still looping"), job)
    assert "restore.max_wall_seconds (now 14400; 0 = no limit)" in hint and "HACKBACK_RESTORE_MAX_WALL_SECONDS" in hint


def test_a_payload_the_guest_could_not_unpack_is_the_scripts_status_whatever_came_after() -> None:
    from hackback.steps import restore

    # An older image: the payload's header says so, then its rcS prints the header's exit status.
    assert restore._script_status("HACKBACK-SCRIPT-EXIT payload\nHACKBACK-SCRIPT-EXIT 125\n") == "payload"
    assert restore._script_status("x\nHACKBACK-SCRIPT-EXIT 0\n") == "0"
    assert restore._script_status("no status line\n") is None
