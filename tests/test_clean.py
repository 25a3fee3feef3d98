"""`invoke clean` and what every task reaps: only what is provably ours.

Pure tests use NoContainers, a test double for the engine with no containers;
those marked docker start (and remove) their own containers and images."""
from __future__ import annotations

import io
import multiprocessing
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from conftest import run_info_json
from hackback.steps import clean
from hackback.base import config, log
from hackback.store import build as build_module
from hackback.store.build import abandoned_tmp, lock, new_tmp, staged, trash_of
from hackback.store.manifest import Manifest, part_record, write_manifest
from hackback.store.layout import Layout
from hackback.steps.clean import CleanRequest
from hackback.base.engine import LABEL, LABEL_OWNER, LABEL_STEP, LABEL_WORKDIR, ContainerInfo, Engine, RunSpec
from hackback.base.ownership import parse_owner
from hackback.base.errors import ConfigError, UsageError

DOTTED_HOST = "node7.cluster.example.org"


class NoContainers:
    """Test double for Engine: a daemon with no containers of ours."""

    def labelled_containers(self) -> list[ContainerInfo]:
        return []


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What hackback prints (log writes to the stdout it found at import)."""
    out = io.StringIO()
    monkeypatch.setattr(log, "_out", out)
    return out


def artifact(work: Path, kind: str, name: str, **info: Any) -> Path:
    d = work / kind / name
    d.mkdir(parents=True)
    (d / "payload").write_text(name)
    m = Manifest(kind, name)
    if kind == "runs":  # a whole run info, as hackback writes it, with the test's fields
        info = run_info_json(str(info.pop("checkpoint", {}).get("name", "default")), **info)
    m.set_part({"runs": "run", "samplings": "sampling", "estimates": "estimate"}.get(kind, kind), {}, {}, info)
    write_manifest(d, m)
    return d


def one_liners(lines: list[str]) -> bool:
    return all(line and "\n" not in line for line in lines)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def run_clean(make_config: Callable[..., Any], request: CleanRequest, eng: Any = None,
              confirm: Optional[Callable[[str], bool]] = None) -> clean.CleanReport:
    return clean.clean(make_config(), request, confirm=confirm, engine=eng or NoContainers())


# ---------------------------------------------------------------- artifacts


def test_clean_leaves_directories_without_a_manifest(make_config, said: io.StringIO) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    ours = artifact(work, "images", "default")
    stray = work / "images" / "stray"
    stray.mkdir()
    (stray / "keep.txt").write_text("not ours")
    garbled = work / "images" / "garbled"
    garbled.mkdir()
    (garbled / "manifest.json").write_text("{not json")
    wrong_kind = work / "images" / "a-kernel"
    wrong_kind.mkdir()
    write_manifest(wrong_kind, Manifest("kernels", "a-kernel"))
    kernel = artifact(work, "kernels", "default")

    report = run_clean(make_config, CleanRequest(kind="images", yes=True))

    assert report.artifacts == [ours] and not ours.exists()
    assert (stray / "keep.txt").read_text() == "not ours"
    assert (garbled / "manifest.json").read_text() == "{not json" and wrong_kind.is_dir() and kernel.is_dir()
    assert sorted(report.left) == sorted([
        f"left {wrong_kind}: it holds no hackback images manifest.json",
        next(line for line in report.left if line.startswith(f"left {garbled}: {garbled / 'manifest.json'} is unreadable")),
        f"left {stray}: it holds no hackback images manifest.json",
    ])
    assert one_liners(report.left) and f"left {stray}" in said.getvalue()
    assert list((work / ".tmp").iterdir()) == []  # the deleted one went through .tmp and is gone


def test_clean_name_does_not_touch_runs_of_a_similarly_named_checkpoint(make_config) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    cpt_x, cpt_other = artifact(work, "checkpoints", "X"), artifact(work, "checkpoints", "X-other")
    run_x = artifact(work, "runs", "X-hello-atomic-1234abcd", checkpoint={"name": "X"})
    run_other = artifact(work, "runs", "X-other-hello-atomic-1234abcd", checkpoint={"name": "X-other"})
    # a run id never decides: this one is X's by its manifest
    renamed = artifact(work, "runs", "by-hand", checkpoint={"name": "X"})
    env_x_other = artifact(work, "env", "X-other")

    report = run_clean(make_config, CleanRequest(name="X", yes=True))

    assert sorted(report.artifacts) == sorted([cpt_x, run_x, renamed])
    assert cpt_other.is_dir() and run_other.is_dir() and env_x_other.is_dir()
    assert (run_other / "payload").read_text() == "X-other-hello-atomic-1234abcd"
    assert report.left == []


def test_clean_name_finds_a_checkpoints_samplings_and_estimates_of_every_rule_by_their_manifests(make_config) -> None:  # type: ignore[no-untyped-def]
    """samplings/<cpt>-r<rule>: `clean --kind samplings --name X` is X's, by what their manifests say."""
    from hackback.store.records import Board, CheckpointRef, EstimateInfo, SampleAt, SamplingInfo

    work = make_config().work_dir

    def sampling_of(cpt: str) -> dict[str, Any]:
        return SamplingInfo(CheckpointRef(cpt, work / "checkpoints" / cpt, "cpt.1"), 40_000, 400, 2, (0.5, 0.5), (1.0, 2.0),
                            (SampleAt(0, 0, 0.5, 100, 40_000, 1, 99, 0, True),), ("cpt.2",), 16_000_000, {"seed": 1}, 1.0,
                            1.0).to_json()

    mine = [artifact(work, "samplings", f"X-r{r}", **sampling_of("X")) for r in ("0123abcd", "89abcdef")]
    theirs = artifact(work, "samplings", "X-other-r0123abcd", **sampling_of("X-other"))
    est = EstimateInfo("X-r0123abcd", Board("2GiB", 1, "o3"), 1.0, 0.1, 4, 2, 100, 1000, 1.0, 1.0, 1.0, ("s0",), checkpoint="X")
    estimate = artifact(work, "estimates", "X-r0123abcd-o3-1234abcd", **est.to_json())
    assert sorted(run_clean(make_config, CleanRequest(kind="samplings", name="X", yes=True)).artifacts) == mine
    assert theirs.is_dir() and estimate.is_dir()
    assert run_clean(make_config, CleanRequest(kind="estimates", name="X", yes=True)).artifacts == [estimate]


def test_clean_finds_artifacts_by_kind_and_name_and_refuses_an_unknown_kind(make_config) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    default, other = artifact(work, "images", "default"), artifact(work, "images", "other")
    assert run_clean(make_config, CleanRequest(kind="images", name="default", yes=True)).artifacts == [default]
    assert other.is_dir()
    with pytest.raises(UsageError, match="not a kind") as e:
        run_clean(make_config, CleanRequest(kind="kernel"))
    assert "\n" not in e.value.one_line()
    with pytest.raises(UsageError, match="no images named nothing-here"):
        run_clean(make_config, CleanRequest(kind="images", name="nothing-here"))
    assert other.is_dir()


def test_clean_asks_and_deletes_nothing_when_told_no(make_config) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    kept = artifact(work, "kernels", "default")
    questions: list[str] = []
    report = run_clean(make_config, CleanRequest(kind="kernels"), confirm=lambda q: questions.append(q) or False)
    assert questions == [f"delete {kept}?"] and kept.is_dir() and report.artifacts == []
    assert report.left == ["no artifact deleted"]


def _hold(work: str, kind: str, name: str, ready: Any, release: Any) -> None:
    with lock(Layout(Path(work)), kind, name):  # type: ignore[arg-type]
        ready.set()
        release.wait(20)


@pytest.mark.parametrize("held", ["default", "default.gem5"])  # the artifact's lock, or one of its parts'
def test_clean_skips_an_artifact_another_task_is_writing(make_config, held: str) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    busy, free = artifact(work, "env", "default"), artifact(work, "env", "other")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(work), "env", held, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        report = run_clean(make_config, CleanRequest(kind="env", yes=True))
    finally:
        release.set()
        holder.join(10)
    assert report.artifacts == [free] and (busy / "payload").read_text() == "default"
    assert report.left == [f"left {busy}: env/{held} is being built by pid {holder.pid} on {socket.gethostname()}"]


def test_empty_work_dir_is_refused(tmp_path: Path) -> None:
    # Run where an empty work dir would land: the current directory, holding an artifact.
    victim = artifact(tmp_path, "env", "default")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    for args, extra in ((["--work-dir", ""], {}), ([], {"HACKBACK_WORK_DIR": ""}), (["--work-dir", " "], {})):
        out = subprocess.run([str(Path(sys.executable).parent / "hackback"), "clean", "--kind", "env", "--yes", *args], cwd=tmp_path, env={**environ, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hackback: error: ") and "is empty" in lines[0]
        assert (victim / "payload").read_text() == "default"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]
    with pytest.raises(ConfigError, match="is empty"):
        config.load(environ={"HACKBACK_WORK_DIR": ""}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="is empty"):
        (tmp_path / "empty.toml").write_text('work_dir = ""\n')
        config.load(user_file=tmp_path / "empty.toml", environ={}, cwd=tmp_path)
    flagged = config.load(flags={"work_dir": str(tmp_path)}, environ={"HACKBACK_WORK_DIR": ""}, cwd=tmp_path)
    assert flagged.work_dir == tmp_path  # the flag wins


# ---------------------------------------------------------------- staging and the replace


def _replace_and_die(work: str, after_renames: int) -> None:
    """A run killed (no cleanup at all) right after its n-th rename."""
    real, done = os.rename, [0]

    def rename(src: Any, dst: Any) -> None:
        real(src, dst)
        done[0] += 1
        if done[0] == after_renames:
            os._exit(9)

    os.rename = rename  # type: ignore[assignment]
    layout = Layout(Path(work))
    with lock(layout, "kernels", "k"), staged(layout, "kernels", "k") as t:
        (t / "vmlinux").write_text("v2")


def _killed_replace(layout: Layout, after_renames: int) -> None:
    proc = multiprocessing.get_context("fork").Process(target=_replace_and_die, args=(str(layout.work_dir), after_renames))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9


def test_replace_keeps_the_old_artifact_until_the_new_one_is_in(tmp_path: Path, said: io.StringIO) -> None:
    layout = Layout(tmp_path)
    final = layout.artifact_dir("kernels", "k")
    with lock(layout, "kernels", "k"), staged(layout, "kernels", "k") as t:
        (t / "vmlinux").write_text("v1")

    # Killed between the renames: the old one is set aside, recognisably, not lost...
    _killed_replace(layout, 1)
    assert not final.exists()
    aside = [p for p in layout.tmp_dir.iterdir() if trash_of(p.name) == ("kernels", "k")]
    assert [(p / "vmlinux").read_text() for p in aside] == ["v1"]
    # ...and the next holder of its lock (the next build) puts it back.
    with lock(layout, "kernels", "k"):
        assert (final / "vmlinux").read_text() == "v1"
    clean.reap_orphans(NoContainers(), layout)  # type: ignore[arg-type]  # the dead run's staging
    assert list(layout.tmp_dir.iterdir()) == []
    # The same kill again, recovered this time by what every task reaps first.
    _killed_replace(layout, 1)
    report = clean.reap_orphans(NoContainers(), layout)  # type: ignore[arg-type]
    assert (final / "vmlinux").read_text() == "v1" and list(layout.tmp_dir.iterdir()) == []
    assert len(report.tmp_paths) == 2  # the new one's staging and the set-aside old one

    # Killed after the new one is in: it stays, the old one is garbage.
    _killed_replace(layout, 2)
    assert (final / "vmlinux").read_text() == "v2"
    clean.reap_orphans(NoContainers(), layout)  # type: ignore[arg-type]
    assert (final / "vmlinux").read_text() == "v2" and list(layout.tmp_dir.iterdir()) == []
    assert "put back" in said.getvalue()


def test_an_interrupt_between_the_renames_puts_the_old_artifact_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path)
    with staged(layout, "kernels", "k") as t:
        (t / "vmlinux").write_text("v1")
    real, done = os.rename, [0]

    def rename(src: Any, dst: Any) -> None:
        real(src, dst)
        done[0] += 1
        if done[0] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(build_module.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with staged(layout, "kernels", "k") as t:
            (t / "vmlinux").write_text("v2")
    assert (layout.artifact_dir("kernels", "k") / "vmlinux").read_text() == "v1"
    assert list(layout.tmp_dir.iterdir()) == []


def test_abandoned_staging_is_recognised_on_a_host_name_with_dots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: DOTTED_HOST)
    layout = Layout(tmp_path)
    mine = new_tmp(layout, "images-x")
    assert mine.name.startswith(f"images-x.{DOTTED_HOST}.{os.getpid()}.")
    proc = multiprocessing.get_context("fork").Process(target=new_tmp, args=(layout, "kernels-my.kernel"))
    proc.start()
    proc.join()
    gone = dead_pid()
    elsewhere = layout.tmp_dir / f"images-z.other.example.org.{gone}.abcd1234"  # another host's: cannot be judged here
    elsewhere.mkdir()
    trash = layout.tmp_dir / f"old-kernels-my.kernel.{DOTTED_HOST}.{gone}.abcd1234"

    found = abandoned_tmp(layout)
    assert [p.name.split(f".{DOTTED_HOST}.")[0] for p in found] == ["kernels-my.kernel"]
    assert trash_of(trash.name) == ("kernels", "my.kernel")
    report = clean.reap_orphans(NoContainers(), layout)  # type: ignore[arg-type]
    assert report.tmp_paths == found and mine.is_dir() and elsewhere.is_dir()


# ---------------------------------------------------------------- containers (no engine)


def test_an_owner_label_splits_on_its_last_colon_and_only_provable_leftovers_are_reaped(tmp_path: Path) -> None:
    assert parse_owner(f"{DOTTED_HOST}:123") == (DOTTED_HOST, 123)
    assert parse_owner("fe80::1:42") == ("fe80::1", 42)
    assert parse_owner("") is None and parse_owner("host") is None and parse_owner("host:x") is None
    work, other = str(tmp_path.resolve()), str((tmp_path / "other").resolve())
    gone = dead_pid()

    def verdict(owner: str, work_dir: str) -> str:
        return ContainerInfo("id", "n", owner, work_dir, "running", "img").verdict(tmp_path, DOTTED_HOST)

    assert verdict(f"{DOTTED_HOST}:{gone}", work) == "reap"
    assert verdict(f"{DOTTED_HOST}:{os.getpid()}", work) == "live"
    assert verdict(f"{DOTTED_HOST}:{os.getpid()}", other) == "live"  # a live run is never touched
    assert verdict(f"{DOTTED_HOST}:{gone}", other) == "unproven"
    assert verdict(f"{DOTTED_HOST}:{gone}", "") == "unproven"
    assert verdict(f"other.{DOTTED_HOST}:{gone}", work) == "unproven"
    assert verdict("", work) == "unproven"


# ---------------------------------------------------------------- Docker tier


@pytest.fixture(scope="module")
def base_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    from hackback.services import tools_image
    from hackback.base import config

    work = tmp_path_factory.mktemp("base-work")
    cfg = config.load(flags={"work_dir": str(work)}, environ={})
    return tools_image.ensure_base(cfg, engine, Layout(cfg.work_dir)).ref


@pytest.fixture
def containers() -> Iterator[list[Any]]:
    """Containers a test creates; all removed after it, and only those."""
    import docker

    made: list[Any] = []
    yield made
    for c in made:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass


def _start(containers: list[Any], image: str, labels: dict[str, str], start: bool = True, ours: bool = True) -> Any:
    import docker

    labels = {LABEL: "1", **labels} if ours else labels
    c = docker.from_env(version="auto").containers.create(image, ["sleep", "300"], labels=labels)
    containers.append(c)
    if start:
        c.start()
    return c


def _status(c: Any) -> str:
    import docker

    try:
        c.reload()
    except docker.errors.NotFound:
        return "removed"
    return str(c.status)


@pytest.mark.docker
def test_clean_never_removes_a_running_container_of_another_owner(engine: Engine, base_image: str, make_config,  # type: ignore[no-untyped-def]
                                                                  containers: list[Any]) -> None:
    cfg = make_config()
    host, gone, work = socket.gethostname(), dead_pid(), str(cfg.work_dir.resolve())
    here = {LABEL_WORKDIR: work}
    other_host = _start(containers, base_image, {**here, LABEL_STEP: "t-c-host", LABEL_OWNER: f"{DOTTED_HOST}:{gone}"})
    other_dir = _start(containers, base_image, {LABEL_WORKDIR: work + "-other", LABEL_STEP: "t-c-dir", LABEL_OWNER: f"{host}:{gone}"})
    no_owner = _start(containers, base_image, {**here, LABEL_STEP: "t-c-none"})
    live = _start(containers, base_image, {LABEL_WORKDIR: work + "-other", LABEL_STEP: "t-c-live", LABEL_OWNER: f"{host}:{os.getpid()}"})
    orphan = _start(containers, base_image, {**here, LABEL_STEP: "t-c-orphan", LABEL_OWNER: f"{host}:{gone}"})
    foreign = [other_host, other_dir, no_owner]

    report = clean.clean(cfg, CleanRequest(yes=True), engine=engine)
    assert report.containers == [orphan.name] and _status(orphan) == "removed"
    assert [_status(c) for c in [*foreign, live]] == ["running"] * 4
    assert one_liners(report.left) and any("--all-owners" in line for line in report.left)

    # --all-owners lists them and asks; told no, it removes nothing.
    questions: list[str] = []
    report = clean.clean(cfg, CleanRequest(all_owners=True), confirm=lambda q: questions.append(q) or False, engine=engine)
    assert report.containers == [] and report.left == ["no container removed"]
    asked = set(questions[0].removeprefix("remove containers ").removesuffix("?").split(", "))
    assert {c.name for c in foreign} <= asked and live.name not in asked
    assert [_status(c) for c in [*foreign, live]] == ["running"] * 4

    # Told yes, it removes them, never the live one. Only when nothing but this test's is
    # listed: another owner's container on this daemon must never be removed by a test.
    extra = asked - {c.name for c in foreign}
    if extra:
        reason = f"the daemon holds hackback containers of other owners ({', '.join(sorted(extra))}): not removing them"
        if os.environ.get("CI"):
            pytest.fail(f"CI's daemon must hold only this run's containers; {reason}")
        pytest.skip(f"'told yes' part: {reason}")
    report = clean.clean(cfg, CleanRequest(all_owners=True), confirm=lambda q: True, engine=engine)
    assert sorted(report.containers) == sorted(c.name for c in foreign)
    assert [_status(c) for c in foreign] == ["removed"] * 3 and _status(live) == "running"


@pytest.mark.docker
def test_every_container_hackback_starts_carries_its_work_dir(engine: Engine, base_image: str, tmp_path: Path) -> None:
    import docker

    seen: list[dict[str, str]] = []

    def look(_line: str) -> None:
        client = docker.from_env(version="auto")
        seen.extend(c.labels for c in client.containers.list(all=True, filters={"label": f"{LABEL_STEP}=t-c-label"}))

    Engine.connect(tmp_path).run(RunSpec(base_image, ["echo", "hi"], step="t-c-label"), on_line=look)
    assert seen and seen[0][LABEL_WORKDIR] == str(tmp_path.resolve())
    assert seen[0][LABEL_OWNER] == f"{socket.gethostname()}:{os.getpid()}"


@pytest.fixture
def test_images(engine: Engine, base_image: str, tmp_path: Path) -> Iterator[list[tuple[str, str]]]:
    """Three small env images of our own (ref, id), removed after the test."""
    made: list[tuple[str, str]] = []
    try:
        for n in range(3):
            context = tmp_path / f"context{n}"
            context.mkdir()
            (context / "Dockerfile").write_text(f"FROM {base_image}\nLABEL io.hackback.test={uuid.uuid4().hex}\n")
            ref = f"hackback-env:test-clean-{uuid.uuid4().hex[:12]}"
            made.append((ref, engine.build(context, ref, phase="t-image")))
        yield made
    finally:
        for ref, _id in made:
            engine.remove_image(ref)


def _env_manifest(work: Path, name: str, ref: str, image_id: str) -> None:
    d = work / "env" / name
    d.mkdir(parents=True)
    m = Manifest("env", name)
    m.parts["gem5"] = part_record({}, {"image": {"ref": ref, "id": image_id}}, {})
    write_manifest(d, m)


@pytest.mark.docker
def test_clean_images_asks_and_keeps_images_in_use(engine: Engine, base_image: str, make_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   test_images: list[tuple[str, str]], containers: list[Any]) -> None:
    cfg = make_config()
    (used, used_id), (free, free_id), (elsewhere, elsewhere_id) = test_images
    _env_manifest(cfg.work_dir, "a", used, used_id)
    _env_manifest(cfg.work_dir, "b", free, free_id)
    _env_manifest(tmp_path / "another-work", "c", elsewhere, elsewhere_id)
    user = _start(containers, used, {}, start=False, ours=False)  # anyone's container, never started: still a user

    def present() -> list[bool]:
        return [engine.image_id(ref) == image_id for ref, image_id in test_images]

    questions: list[str] = []
    report = clean.clean(cfg, CleanRequest(images=True), confirm=lambda q: questions.append(q) or False, engine=engine)
    assert questions == [f"remove Docker images {free}?"] and report.images == [] and present() == [True] * 3

    report = clean.clean(cfg, CleanRequest(images=True, name="a", yes=True), engine=engine)
    assert report.images == [] and present() == [True] * 3
    assert f"left image {used} ({cfg.work_dir / 'env' / 'a'}): in use by container(s) {user.name}" in report.left
    assert one_liners(report.left)

    report = clean.clean(cfg, CleanRequest(images=True, yes=True), engine=engine)
    assert report.images == [free] and present() == [True, False, True]
    assert engine.image_id(base_image) is not None
    assert (cfg.work_dir / "env" / "b" / "manifest.json").is_file()  # --images alone deletes no artifact


def test_clean_dry_run_lists_what_it_would_remove_and_removes_nothing(make_config, said: io.StringIO) -> None:  # type: ignore[no-untyped-def]
    work = make_config().work_dir
    default = artifact(work, "images", "default")
    before = sorted(str(p) for p in work.rglob("*"))
    report = run_clean(make_config, CleanRequest(kind="images", name="default", yes=True, dry_run=True))
    assert report.artifacts == [] and default.is_dir() and sorted(str(p) for p in work.rglob("*")) == before
    assert f"plan: would delete {default}" in said.getvalue()
    nothing = run_clean(make_config, CleanRequest(kind="runs", name="none-such", dry_run=True))  # not refused: it says so
    assert nothing.artifacts == [] and "plan: would remove nothing: no runs named none-such" in said.getvalue()
