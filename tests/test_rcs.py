"""The guest side (the rcS and hackback-guest, compiled in the tools image), run
on the host against a recording m5 test double (the QEMU tier runs it for real
in a booted image, the gem5 tier with gem5's m5 calls)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hackback.steps.image import GUEST

RCS = GUEST / "hack_back_ckpt.rcS"


pytestmark = pytest.mark.docker  # the helper is compiled in the tools image


@pytest.fixture
def guest(tmp_path: Path, guest_helper: Path):  # type: ignore[no-untyped-def]
    """Runs the rcS with a test-double m5 whose readfile hands over `script`."""
    calls = tmp_path / "calls"
    script = tmp_path / "script-to-hand-over"
    script.write_text("")
    m5 = tmp_path / "m5"
    sent = tmp_path / "host-out"
    m5.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = readfile ] && cat {script}\n'
                  f'[ "$1" = writefile ] && mkdir -p {sent} && cp "$2" {sent}/"$3"\nexit 0\n')
    m5.chmod(0o755)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0\n")

    def run(text: "str | bytes" = "", extra_env: dict[str, str] | None = None, cmd: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
        script.write_bytes(text.encode() if isinstance(text, str) else text)
        env = {k: v for k, v in os.environ.items() if k != "RUNSCRIPT_VAR"}
        env.update(HACKBACK_STATE=str(tmp_path / "run"), HACKBACK_M5=str(m5), HACKBACK_CMDLINE=str(cmdline),
                   HACKBACK_GUEST=str(guest_helper), HACKBACK_PAYLOAD_DIR=str(tmp_path / "payload"),
                   HACKBACK_RESULTS_DIR=str(tmp_path / "results"), **(extra_env or {}))
        out = subprocess.run(["bash", str(RCS)], env=env, capture_output=True, text=True, timeout=30)
        return out, calls.read_text().split("\n")[:-1] if calls.exists() else []

    run.cmdline = cmdline  # type: ignore[attr-defined]
    run.tmp = tmp_path  # type: ignore[attr-defined]
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


def _stream(tmp: Path, body: str) -> bytes:
    from hackback.services import payload

    data = tmp / "data"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "n.txt").write_text("42\n")
    (data / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    script = tmp / "run.sh"
    script.write_text(body)
    payload.write_stream(script, payload.collect([data], 1 << 20), tmp / "stream")
    return (tmp / "stream").read_bytes()


def test_a_payload_is_unpacked_where_the_script_runs_and_results_go_back(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = ('#!/bin/bash\necho "in $PWD: $(cat inputs/n.txt)"; sh tool.sh\n'
            'mkdir -p "$HACKBACK_RESULTS_DIR/sub"; echo done > "$HACKBACK_RESULTS_DIR/sub/out.txt"\n')
    out, calls = guest(_stream(tmp_path, body))
    lines = out.stdout.splitlines()
    assert f"in {guest.tmp / 'payload'}: 42" in lines and "tool ran" in lines
    assert "HACKBACK-SCRIPT-EXIT 0" in lines and "HACKBACK-RESULTS sent" in lines
    assert calls == ["checkpoint", "readfile", "readfile", "writefile " + str(guest.tmp / "run" / "hackback-results.tar")
                     + " hackback-results.tar", "exit"]
    import tarfile

    with tarfile.open(guest.tmp / "host-out" / "hackback-results.tar") as tar:
        assert "./sub/out.txt" in tar.getnames()


def test_a_broken_payload_ends_the_run_without_running_the_script(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _stream(tmp_path, "#!/bin/sh\necho never\n")
    out, calls = guest(data[: len(data) - 10])  # the last file cut short
    assert "never" not in out.stdout and "HACKBACK-SCRIPT-EXIT payload" in out.stdout.splitlines()
    assert calls[-1] == "exit"


def test_a_stream_cut_short_inside_the_script_does_not_run_a_cut_script(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hackback.services import payload

    data = _stream(tmp_path, "#!/bin/sh\necho never\n" + "# padding\n" * 50)
    out, calls = guest(data[: payload.SCRIPT_AT + 12])  # the script's first 12 bytes only: "#!/bin/sh\nec"
    assert "HACKBACK-SCRIPT-EXIT payload" in out.stdout.splitlines() and "cut short" in out.stdout
    assert calls[-1] == "exit" and "never" not in out.stdout


def _header_run(engine, tools, stream: Path) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    from hackback.base.engine import Mount, RunSpec

    lines: list[str] = []
    status = engine.run(RunSpec(tools.ref, ["sh", "/in/stream"], step="t-payload-header", kvm=False, network="none",
                                as_root=True, mounts=[Mount(stream, "/in/stream")]),
                        on_line=lines.append, check=False)
    return status, lines


def test_the_header_refuses_a_stream_cut_short_on_a_guest_without_the_helper(tmp_path: Path, engine, tools) -> None:  # type: ignore[no-untyped-def]
    """dd exits 0 on short input: the header checks the stream's length before
    unpacking, so an older image never runs the script on cut files."""
    data = _stream(tmp_path, '#!/bin/bash\necho "script ran: $(cat inputs/n.txt)"\n')
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) - 3])  # the last file loses its last bytes
    status, lines = _header_run(engine, tools, cut)
    assert status == 125 and "HACKBACK-SCRIPT-EXIT payload" in lines, lines
    assert not any(ln.startswith("script ran") for ln in lines) and any("cut short" in ln for ln in lines)


def test_the_header_unpacks_the_payload_on_a_guest_without_the_helper(tmp_path: Path, engine, tools) -> None:  # type: ignore[no-untyped-def]
    """Images from before hackback-guest save the whole readfile and run it with its
    #! interpreter: the header does what the helper does, from its own file."""
    _stream(tmp_path, '#!/bin/bash\necho "in $PWD: $(cat inputs/n.txt)"\nexit 5\n')
    status, lines = _header_run(engine, tools, tmp_path / "stream")
    assert "in /root/payload: 42" in lines and "HACKBACK-PAYLOAD unpacked into /root/payload" in lines
    assert status == 5


def test_a_child_checkpoint_resumes_with_the_script_it_is_handed(tmp_path: Path, guest_helper: Path) -> None:
    """hackback-checkpoint from a restored script: m5 checkpoint, then (in a restore
    of the child) m5 readfile and the script run as after the boot's checkpoint."""
    calls = tmp_path / "calls"
    m5 = tmp_path / "m5"
    nxt = tmp_path / "next.sh"
    nxt.write_text("#!/bin/sh\necho measured part\nexit 7\n")
    m5.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = readfile ] && cat {nxt}\nexit 0\n')
    m5.chmod(0o755)
    link = tmp_path / "hackback-checkpoint"
    link.symlink_to(guest_helper)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0\n")
    env = {k: v for k, v in os.environ.items() if k != "RUNSCRIPT_VAR"}
    env.update(HACKBACK_STATE=str(tmp_path / "run"), HACKBACK_M5=str(m5), HACKBACK_CMDLINE=str(cmdline),
               HACKBACK_PAYLOAD_DIR=str(tmp_path / "payload"), HACKBACK_RESULTS_DIR=str(tmp_path / "results"))
    out = subprocess.run([str(link)], env=env, capture_output=True, text=True, timeout=30)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("HACKBACK-GUEST ") and lines[1].startswith("HACKBACK-CHILD-CHECKPOINT")
    assert "measured part" in lines and "HACKBACK-SCRIPT-EXIT 7" in lines
    assert calls.read_text().split() == ["checkpoint", "readfile", "exit"]
    assert (tmp_path / "run" / "child" / "script").read_text() == nxt.read_text()
