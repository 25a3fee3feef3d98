"""The guest side (the rcS and hackback-guest, compiled in the tools image), run
on the host against a recording m5 test double (the QEMU tier runs it for real
in a booted image, the gem5 tier with gem5's m5 calls)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hackback.image import GUEST

RCS = GUEST / "hack_back_ckpt.rcS"


pytestmark = pytest.mark.docker  # the helper is compiled in the tools image


@pytest.fixture
def guest(tmp_path: Path, guest_helper: Path):  # type: ignore[no-untyped-def]
    """Runs the rcS with a test-double m5 whose readfile hands over `script`."""
    calls = tmp_path / "calls"
    script = tmp_path / "script-to-hand-over"
    script.write_text("")
    m5 = tmp_path / "m5"
    m5.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = readfile ] && cat {script}\nexit 0\n')
    m5.chmod(0o755)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0\n")

    def run(text: str = "", extra_env: dict[str, str] | None = None, cmd: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
        script.write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "RUNSCRIPT_VAR"}
        env.update(HACKBACK_STATE=str(tmp_path / "run"), HACKBACK_M5=str(m5), HACKBACK_CMDLINE=str(cmdline),
                   HACKBACK_GUEST=str(guest_helper), **(extra_env or {}))
        out = subprocess.run(["bash", str(RCS)], env=env, capture_output=True, text=True, timeout=30)
        return out, calls.read_text().split("\n")[:-1] if calls.exists() else []

    run.cmdline = cmdline  # type: ignore[attr-defined]
    return run


def test_checkpoint_then_readfile_then_script_status_then_exit(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("#!/bin/sh\necho benchmark output\nexit 3\n")
    assert calls == ["checkpoint", "readfile", "exit"]
    assert "benchmark output" in out.stdout
    assert "HACKBACK-SCRIPT-EXIT 3" in out.stdout.splitlines()


def test_script_without_shebang_runs_with_sh(guest) -> None:  # type: ignore[no-untyped-def]
    out, _ = guest("echo plain\nexit 0\n")
    assert "plain" in out.stdout and "HACKBACK-SCRIPT-EXIT 0" in out.stdout


def test_script_that_exits_early_still_ends_the_simulation(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("#!/bin/bash\nset -e\nfalse\necho never\n")
    assert calls[-1] == "exit"
    assert "never" not in out.stdout and "HACKBACK-SCRIPT-EXIT 1" in out.stdout


def test_empty_script_ends_with_a_message_not_a_shell(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("")
    assert calls == ["checkpoint", "readfile", "exit"]
    assert "HACKBACK-SCRIPT-EXIT empty" in out.stdout and "empty script" in out.stdout


def test_second_login_takes_no_second_checkpoint(guest) -> None:  # type: ignore[no-untyped-def]
    guest("exit 0\n")
    out, calls = guest("exit 0\n")
    assert calls.count("checkpoint") == 1
    assert out.stdout.startswith("HACKBACK-AGAIN")


def test_nested_shell_does_nothing(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("exit 0\n", extra_env={"RUNSCRIPT_VAR": "1"})
    assert calls == [] and out.stdout == ""


def test_marker_mode_makes_no_m5_call(guest) -> None:  # type: ignore[no-untyped-def]
    guest.cmdline.write_text("console=ttyS0 hackback.m5=off\n")
    out, calls = guest("exit 0\n")
    assert calls == []
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("HACKBACK-MARK")] == [
        "HACKBACK-MARK m5 checkpoint", "HACKBACK-MARK m5 readfile", "HACKBACK-MARK m5 exit"]


def test_interpreter_arguments_and_the_script_path(guest) -> None:  # type: ignore[no-untyped-def]
    out, _ = guest("#!/bin/bash -eu\necho \"args: $- $0\"\n")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("args: "))
    assert "e" in line.split()[1] and "u" in line.split()[1] and line.endswith("/run/script")


def test_a_script_killed_by_a_signal_reports_128_plus_it(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("#!/bin/sh\nkill -TERM $$\n")
    assert "HACKBACK-SCRIPT-EXIT 143" in out.stdout.splitlines() and calls[-1] == "exit"


def test_a_missing_interpreter_is_127_and_still_ends(guest) -> None:  # type: ignore[no-untyped-def]
    out, calls = guest("#!/no/such/shell\necho never\n")
    assert "HACKBACK-SCRIPT-EXIT 127" in out.stdout.splitlines() and calls == ["checkpoint", "readfile", "exit"]
    assert "/no/such/shell" in out.stderr


def test_the_script_inherits_the_guard_so_nested_shells_do_nothing(guest) -> None:  # type: ignore[no-untyped-def]
    out, _ = guest("#!/bin/sh\necho guard=$RUNSCRIPT_VAR\n")
    assert "guard=1" in out.stdout.splitlines()
