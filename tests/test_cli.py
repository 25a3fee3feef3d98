"""The tasks as a user runs them: `invoke` in the repo and the installed `hackback` command."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TASKS = ("env", "image", "kernel", "checkpoint", "restore", "checkpoints", "clean")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    environ.update(HACKBACK_WORK_DIR=str(tmp_path / "work"), **env)
    if args[0] == "hackback":  # the command the install put beside this Python (.venv/bin)
        args = [str(Path(sys.executable).parent / "hackback"), *args[1:]]
    proc = subprocess.Popen(args, cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: hackback then removes its containers like on Ctrl-C.
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"{args} did not finish in 300 s:\n{err[-2000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("program", [[sys.executable, "-m", "invoke"], ["hackback"]])
def test_list_names_every_task_with_help(program: list[str], tmp_path: Path) -> None:
    out = run(program + ["--list"], tmp_path)
    assert out.returncode == 0, out.stderr
    for task in TASKS:
        line = next((ln for ln in out.stdout.splitlines() if ln.strip().startswith(task + " ")), "")
        assert len(line.split()) > 2, f"{task} has no one-line help in:\n{out.stdout}"


def test_restore_without_a_script_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "invoke", "restore"], tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["hackback: error: no script given (name one with --script FILE (or a directory of scripts))"]
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("content, says", [(None, "does not exist"), (b"", "is empty"), (b"  \n", "is empty"),
                                           (b"\x7fELF\x02\x01\x00\x00", "not a text script")])
def test_restore_refuses_a_bad_script_in_one_line(content: "bytes | None", says: str, tmp_path: Path) -> None:
    script = tmp_path / "bench.rcS"
    if content is not None:
        script.write_bytes(content)
    out = run(["hackback", "restore", "--script", str(script)], tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and str(script) in lines[0]
    assert not (tmp_path / "work").exists()


def test_unknown_config_key_is_one_line_with_exit_2(tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "invoke", "env"], tmp_path, HACKBACK_GEM5_VERSOIN="x")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("hackback: error: unknown config key")


def test_no_docker_engine_is_one_line_on_how_to_start_it(tmp_path: Path) -> None:
    out = run(["hackback", "env"], tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    assert out.returncode == 4
    assert "dockerd" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.docker
def test_env_without_reachable_gem5_fails_fast_and_leaves_nothing(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = engine.containers(all_owners=True)
    start = time.monotonic()
    out = run([sys.executable, "-m", "invoke", "env"], tmp_path, HACKBACK_GEM5_REPO="https://gem5.invalid/gem5.git")
    assert time.monotonic() - start < 120
    assert out.returncode == 7
    assert "--gem5-src" in out.stderr.strip().splitlines()[-1]
    assert engine.containers(all_owners=True) == before
    assert not any((tmp_path / "work" / "env").glob("*"))


def test_every_task_gives_the_same_short_flag_for_the_same_option_and_none_is_h() -> None:
    import re

    from hackback.tasks import ns

    seen: dict[str, set[str]] = {}
    for name in ns.task_names:
        out = subprocess.run([sys.executable, "-m", "invoke", name, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for short, long in re.findall(r"^\s+-(\w)(?: \S+)?, --([\w-]+)", out.stdout, re.M):
            assert short != "h", f"{name}: -h is help, not --{long}"
            seen.setdefault(long, set()).add(short)
    assert seen and all(len(shorts) == 1 for shorts in seen.values()), seen
    by_short: dict[str, set[str]] = {}
    for long, shorts in seen.items():
        by_short.setdefault(next(iter(shorts)), set()).add(long)
    assert all(len(longs) == 1 for longs in by_short.values()), by_short


@pytest.mark.parametrize("args", [["--help"], ["--list"], ["restore", "--help"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(args: list[str], tmp_path: Path) -> None:
    """`hackback --help | head`: the pipe is closed before hackback writes; no
    BrokenPipeError traceback, exit 0."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        out = subprocess.run([str(Path(sys.executable).parent / "hackback"), *args], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=120, env={**os.environ, "HACKBACK_WORK_DIR": str(tmp_path / "w")})
    finally:
        os.close(write)
    assert out.returncode == 0 and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_every_option_says_what_its_value_is_and_repeatable_ones_say_so() -> None:
    """The flag conventions (docs/reference/conventions.md), checked over the one task table."""
    from hackback import tasks

    for spec in tasks.TASKS:
        rows = dict(tasks.help_rows(spec.name))
        for option in spec.options:
            o, flag = tasks.OPTIONS[option], tasks._flag(option)
            shown = next(k for k in rows if k.endswith(f"--{flag}") or f"--{flag}=" in k or f"--{flag}[=" in k)
            if o.kind is bool:
                assert "=" not in shown, (spec.name, shown)
            else:
                value = tasks.metavar(option)
                assert value and value != "TEXT" and "STRING" not in shown and value in shown, (spec.name, shown)
            assert (o.kind is list) == rows[shown].endswith("(repeatable)"), (spec.name, shown)


def test_one_flag_name_means_one_kind_of_value_on_every_task() -> None:
    from hackback import tasks

    seen: dict[str, set[str]] = {}
    for spec in tasks.TASKS:
        for option in spec.options:
            seen.setdefault(tasks._flag(option), set()).add(tasks.metavar(option))
    assert {flag: kinds for flag, kinds in seen.items() if len(kinds) > 1} == {}
    assert seen["checkpoint"] == {"NAME|DIR"} and seen["script"] == {"FILE"}


def test_hackback_help_shows_the_tables_flags_not_invokes(tmp_path: Path) -> None:
    out = run(["hackback", "restore", "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "STRING" not in out.stdout and "--l1d=SIZE" in out.stdout and "-j, --jobs=INT" in out.stdout
    assert "--payload=DIR" in out.stdout and "(repeatable)" in out.stdout
    core = run(["hackback", "--help"], tmp_path)
    for clash in ("--dry", "--warn-only", "--pty", "--echo", "--debug", "--command-timeout"):
        assert clash not in core.stdout, clash


@pytest.mark.parametrize("columns", ["80", "200"])
def test_every_tasks_help_prints_whatever_the_terminal_width(tmp_path: Path, columns: str) -> None:
    """clean's --kind values are wider than an 80-column help leaves (invoke's own
    wrap raised there): each task's help exits 0 with every flag and its help."""
    from hackback.tasks import help_rows

    for task in TASKS:
        out = run(["hackback", task, "--help"], tmp_path, COLUMNS=columns)
        assert out.returncode == 0 and not out.stderr, (task, out.stderr[-2000:])
        flat = " ".join(out.stdout.split())
        for name, help_str in help_rows(task):
            assert name in out.stdout and " ".join(help_str.split()) in flat, (task, name)


@pytest.mark.parametrize("argv,want", [
    (["-w", "/w", "checkpoints"], ["checkpoints", "-w", "/w"]),
    (["--work-dir=/w", "--config", "x.toml", "report", "--cpu", "o3"], ["report", "--work-dir=/w", "--config", "x.toml", "--cpu", "o3"]),
    (["--help", "restore"], ["--help", "restore"]),
    (["-V"], ["-V"]),
])
def test_a_tasks_option_given_before_the_task_name_is_taken_as_the_tasks(argv: list[str], want: list[str]) -> None:
    from hackback import cli

    assert cli.reorder(argv) == want


@pytest.mark.parametrize("argv,says", [
    (["-R", "checkpoints"], "-R is not an option of hackback itself"),  # invoke's --dry: hackback has none
    (["-p", "checkpoints"], "-p is not an option of hackback itself"),  # invoke's --pty; -p is --cpu, not a flag of this task
    (["--config", "missing.toml", "checkpoints"], "config file"),  # taken as the task's --config: one line, no traceback
])
def test_an_option_before_the_task_name_that_is_not_the_tasks_is_one_line(argv: list[str], says: str, tmp_path: Path) -> None:
    out = run(["hackback", *argv], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and says in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_the_checkpoint_is_a_name_or_a_directory_and_an_unknown_one_lists_the_known(tmp_path: Path) -> None:
    from conftest import checkpoint_info_json
    from hackback.steps import checkpoint
    from hackback.store.layout import Layout
    from hackback.store.manifest import Manifest, write_manifest
    from hackback.base.errors import UsageError
    from hackback.store.records import checkpoint_name_of

    layout = Layout(tmp_path / "work")
    d = layout.artifact_dir("checkpoints", "roi")
    (d / "cpt.42").mkdir(parents=True)
    (d / "cpt.42" / "m5.cpt").write_text("[root]\n")
    m = Manifest("checkpoints", "roi")
    m.set_part("checkpoint", {}, {}, checkpoint_info_json("cpt.42"))
    write_manifest(d, m)
    assert checkpoint.find(layout, "roi").directory == d == checkpoint.find(layout, str(d)).directory
    assert checkpoint_name_of(layout, str(d)) == "roi" == checkpoint_name_of(layout, "roi")
    with pytest.raises(UsageError, match="no checkpoint 'nope'") as e:
        checkpoint.find(layout, "nope")
    assert "known names: roi" in e.value.one_line()


@pytest.mark.parametrize("args,says", [
    (["suite"], "no suite named"),
    (["suite", "spec"], "'suite.name' in the task flags is 'spec'"),
    (["suite", "npb", "--members", "is,xx", "--source", "/nowhere"], "npb has no member 'xx'"),
    (["suite", "npb"], "no source for npb"),
    (["suite", "npb", "--source", "/nowhere/npb.tar.xz"], "the npb source /nowhere/npb.tar.xz does not exist"),
    (["suite", "gapbs", "--source", "https://example.invalid/gapbs.tar.gz"], "without its sha256"),
    (["suite", "npb", "--members", "is,mg", "--source", "/nowhere", "--save-checkpoint", "roi"], "saves one member"),
])
def test_a_suite_asked_for_wrongly_is_refused_in_one_line_before_anything_builds(args: list[str], says: str,
                                                                                 tmp_path: Path) -> None:
    out = run(["hackback", *args], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and says in lines[0], out.stderr
    assert not any((tmp_path / "work" / kind).exists() for kind in ("env", "images", "kernels", "checkpoints", "benchmarks"))


def test_a_suite_tarball_with_another_sha256_is_refused_before_anything_builds(tmp_path: Path) -> None:
    tarball = tmp_path / "npb.tar"
    import tarfile

    (tmp_path / "tree" / "sys").mkdir(parents=True)
    (tmp_path / "tree" / "sys" / "setparams.c").write_text("/* stand-in */\n")
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "tree", arcname="npb")
    out = run(["hackback", "suite", "npb", "--source", str(tarball), "--sha256", "0" * 64], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "has sha256" in lines[0] and "not the 000" in lines[0], out.stderr
    assert not any((tmp_path / "work" / kind).exists() for kind in ("env", "images", "kernels", "checkpoints", "benchmarks"))


DRY_TASKS = [
    ["env"], ["image"], ["kernel"], ["checkpoint"], ["restore", "--script", "examples/hello.rcS"], ["export"],
    ["suite", "npb", "--source", "{npb}"], ["report"], ["checkpoints"], ["clean"], ["clean", "--kind", "runs", "--name", "x"],
]


@pytest.mark.docker
@pytest.mark.parametrize("args", DRY_TASKS, ids=lambda a: " ".join(a[:2]))
def test_a_dry_run_on_a_fresh_work_dir_writes_nothing_starts_no_container_and_names_the_gem5_compile(
        args: list[str], engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--dry-run is dry: no clone (a git that would say so is first on PATH), no
    extraction, no container (docker's own event log for containers labelled with
    this work dir), nothing in the work dir; and its plan names the gem5 compile."""
    import tarfile

    tree = tmp_path / "npb-src" / "npb" / "sys"
    tree.mkdir(parents=True)
    (tree / "setparams.c").write_text("/* stand-in */\n")
    with tarfile.open(tmp_path / "npb.tar", "w") as tar:
        tar.add(tmp_path / "npb-src" / "npb", arcname="npb")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(f"#!/bin/sh\ntouch {tmp_path}/git-ran\nexit 1\n")
    (fake / "git").chmod(0o755)
    work = tmp_path / "work"
    since = int(time.time())
    argv = [a.replace("{npb}", str(tmp_path / "npb.tar")) for a in args]
    out = run(["hackback", *argv, "--dry-run"], tmp_path, PATH=f"{fake}:{os.environ['PATH']}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert not work.exists() or not any(work.rglob("*")), sorted(str(p) for p in work.rglob("*"))[:10]
    assert not (tmp_path / "git-ran").exists()
    events = subprocess.run(["/usr/bin/docker", "events", "--since", str(since), "--until", str(int(time.time()) + 1),
                             "--filter", "type=container", "--filter", "event=create",
                             "--filter", f"label=io.hackback.workdir={work}"], capture_output=True, text=True, timeout=60)
    assert events.returncode == 0 and events.stdout.strip() == "", events.stdout
    if args[0] in ("env", "checkpoint", "restore", "suite"):
        assert "gem5.opt compiled from source: hours on 2 cores" in out.stdout, out.stdout[-2000:]
