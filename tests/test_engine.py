"""The Docker layer against the real engine (Docker tier)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from hackback.services import tools_image
from hackback.steps import clean
from hackback.store.layout import Layout
from hackback.base.engine import LABEL, LABEL_OWNER, LABEL_STEP, LABEL_WORKDIR, Engine, Mount, RunSpec
from hackback.base.errors import ContainerFailed, DockerUnavailable

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image(engine: Engine, session_work: Path) -> str:
    from hackback.base import config

    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    return tools_image.ensure_base(cfg, engine, Layout(cfg.work_dir)).ref


def ours(step: str) -> list[object]:
    client = docker.from_env(version="auto")
    return client.containers.list(all=True, filters={"label": f"{LABEL_STEP}={step}"})


def test_output_is_streamed_in_order_and_the_container_removed(engine: Engine, image: str) -> None:
    lines: list[str] = []
    script = "for i in 1 2 3 4 5; do echo out$i; done; echo err >&2"
    status = engine.run(RunSpec(image, ["sh", "-c", script], step="t-stream"), on_line=lines.append)
    assert status == 0
    # stdout and stderr are separate pipes: each keeps its order, and both arrive
    assert [ln for ln in lines if ln.startswith("out")] == [f"out{i}" for i in range(1, 6)]
    assert "err" in lines
    assert ours("t-stream") == []


def test_failure_carries_status_and_tail_and_still_removes(engine: Engine, image: str) -> None:
    with pytest.raises(ContainerFailed) as e:
        engine.run(RunSpec(image, ["sh", "-c", "echo about to fail; exit 3"], step="t-fail"), on_line=lambda _l: None)
    assert e.value.exit_status == 3
    assert "about to fail" in e.value.log_tail and "exited 3" in e.value.message
    assert ours("t-fail") == []
    assert engine.run(RunSpec(image, ["false"], step="t-fail"), check=False, on_line=lambda _l: None) == 1


def test_interrupt_removes_the_container(engine: Engine, image: str) -> None:
    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.run(RunSpec(image, ["sh", "-c", "echo started; sleep 300"], step="t-intr"), on_line=interrupt)
    assert time.monotonic() - start < 30
    assert ours("t-intr") == []


def test_graceful_stop_lets_the_step_save_state(engine: Engine, image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = "trap 'echo saved > /out/state; exit 2' TERM; echo started; while :; do sleep 0.2; done"

    def interrupt(line: str) -> None:
        if line == "started":
            raise KeyboardInterrupt

    spec = RunSpec(image, ["sh", "-c", script], step="t-grace", mounts=[Mount(out, "/out", read_only=False)], stop_grace=20)
    with pytest.raises(KeyboardInterrupt):
        engine.run(spec, on_line=interrupt)
    assert (out / "state").read_text() == "saved\n"
    assert ours("t-grace") == []


def test_mounts_are_read_only_unless_written_and_outputs_are_the_users(engine: Engine, image: str, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    status = engine.run(
        RunSpec(image, ["sh", "-c", "touch /ro/x"], step="t-ro", mounts=[Mount(ro, "/ro")]), check=False, on_line=lambda _l: None
    )
    assert status != 0 and not (ro / "x").exists()
    engine.run(RunSpec(image, ["sh", "-c", "echo $HOME > /rw/x"], step="t-rw", mounts=[Mount(rw, "/rw", read_only=False)]))
    st = (rw / "x").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert (rw / "x").read_text().strip() == "/tmp"


def test_kvm_is_passed_through_when_the_host_has_it(engine: Engine, image: str) -> None:
    lines: list[str] = []
    engine.run(RunSpec(image, ["sh", "-c", "test -c /dev/kvm && echo yes || echo no"], step="t-kvm"), on_line=lines.append)
    from hackback.base.engine import kvm_usable_on_host

    assert lines == (["yes"] if kvm_usable_on_host() else ["no"])


def test_clean_reaps_containers_of_dead_runs_only(engine: Engine, image: str, make_config) -> None:  # type: ignore[no-untyped-def]
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    cfg = make_config()
    client = docker.from_env(version="auto")
    host = socket.gethostname()
    mine = {LABEL: "1", LABEL_WORKDIR: str(cfg.work_dir.resolve())}
    orphan = client.containers.create(image, ["sleep", "300"], labels={**mine, LABEL_STEP: "t-orphan", LABEL_OWNER: f"{host}:{dead.pid}"})
    alive = client.containers.create(image, ["sleep", "300"], labels={**mine, LABEL_STEP: "t-alive", LABEL_OWNER: f"{host}:{os.getpid()}"})
    try:
        orphan.start()
        report = clean.clean(cfg, clean.CleanRequest(yes=True), engine=engine)
        assert orphan.name in report.containers and alive.name not in report.containers
        assert ours("t-orphan") == [] and len(ours("t-alive")) == 1
    finally:
        for c in (orphan, alive):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


def test_no_engine_is_one_line_saying_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(DockerUnavailable) as e:
        Engine.connect()
    assert "dockerd" in e.value.one_line() and "\n" not in e.value.one_line()


def test_concurrent_runs_do_not_mix_output(engine: Engine, image: str) -> None:
    got: dict[str, list[str]] = {"a": [], "b": []}

    def go(tag: str) -> None:
        engine.run(RunSpec(image, ["sh", "-c", f"for i in 1 2 3; do echo {tag}$i; done"], step=f"t-par-{tag}"), on_line=got[tag].append)

    threads = [threading.Thread(target=go, args=(t,)) for t in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"]}


def test_one_host_directory_can_be_mounted_twice(engine: Engine, image: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("same\n")
    lines: list[str] = []
    engine.run(RunSpec(image, ["sh", "-c", "cat /a/f /b/f"], step="t-twice", mounts=[Mount(tmp_path, "/a"), Mount(tmp_path, "/b")]), on_line=lines.append)
    assert lines == ["same", "same"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_a_killed_task_leaves_no_container_running(engine: Engine, image: str, sig: int) -> None:
    """kill -9 (or a hang-up) of the process that started a container: the guard
    it left (hackback/base/reaper.py) removes the container well within 60 s."""
    # Under nohup this test process ignores SIGHUP, and so would its child: set it back to the default there.
    code = ("import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); from hackback.base.engine import Engine, RunSpec; "
            f"Engine.connect().run(RunSpec({image!r}, ['sleep', '300'], step='t-killed', kvm=False), on_line=lambda l: None)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={k: v for k, v in os.environ.items() if k != "HACKBACK_NO_REAPER"})
    owner = f"{socket.gethostname()}:{proc.pid}"
    try:
        deadline = time.monotonic() + 60
        while not [c for c in engine.labelled_containers() if c.owner == owner and c.state == "running"]:
            assert time.monotonic() < deadline and proc.poll() is None, "the container never started"
            time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        killed = time.monotonic()
        while [c for c in engine.labelled_containers() if c.owner == owner] and time.monotonic() - killed < 60:
            time.sleep(1)
        left = [c.name for c in engine.labelled_containers() if c.owner == owner]
        assert left == [], f"still there {time.monotonic() - killed:.0f}s after the kill: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in engine.labelled_containers():
            if c.owner == owner:
                engine.remove_container(c.id)
