"""`invoke restore --on slurm` against a real single-node Slurm (tests/slurm_cluster.py)
and the real Docker engine, with the gem5 test double of test_checkpoint_restore.py
as the env's gem5: the job array, what it leaves in runs/, no-op resubmission,
failures, cancelling, and a node loading the env image from its saved copy. The
same path with real gem5 is in test_gem5_end_to_end.py."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hackback.steps import checkpoint, cluster
from hackback.services import slurm
from hackback.store.hashes import HashCache
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest, write_manifest
from hackback.protocol.context import StepContext
from hackback.base.engine import Engine
from hackback.base.errors import ClusterError, TaskFailed, UsageError
from hackback.store.records import EnvArtifact, Gem5Source
from test_checkpoint_restore import TAGS, env_double, inputs_double, script, standin_image  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.slurm]


def env_on_disk(tools, image_ref: str, directory: Path) -> EnvArtifact:  # type: ignore[no-untyped-def]
    """The env test double with its manifest written where a node reads it."""
    directory.mkdir(parents=True, exist_ok=True)
    double = env_double(tools, image_ref, directory)
    write_manifest(directory, double.manifest)
    source = Gem5Source(directory, "test double", "24.0.0.1", None, None, "t" * 64, "m" * 64, tuple(TAGS))
    return EnvArtifact(double.name, directory, image_ref, directory / "m5", double.manifest, tools, source)


@pytest.fixture(scope="module")
def world(engine: Engine, tools, standin_image: str, slurm_cluster, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One work dir for the module: the env image's saved copy is made once."""
    from hackback.base import config

    root = tmp_path_factory.mktemp("cluster")

    def cfg(**flags: object) -> Any:
        base = {"work_dir": str(root / "work"), "restore.on": "slurm", "slurm.poll_seconds": 1, "slurm.python": sys.executable}
        base.update({k.replace("__", "."): v for k, v in flags.items()})
        return config.load(flags=base, environ={}, cwd=root)

    first = cfg()
    image, kernel = inputs_double(root, HashCache(Layout(first.work_dir).hash_db))
    env = env_on_disk(tools, standin_image, root / "work" / "env" / "default")
    cpt = checkpoint.ensure(StepContext.open(first, engine), env, image, kernel)
    return dict(cfg=cfg, env=env, cpt=cpt, root=root, engine=engine)


def _submit(world: dict[str, Any], scripts: list[Path], **flags: object) -> list[Any]:
    ctx = StepContext.open(world["cfg"](**flags), world["engine"])
    return cluster.restore_runs(ctx, world["env"], world["cpt"], scripts)


def _batches(world: dict[str, Any]) -> list[Path]:
    return sorted((world["root"] / "work" / "slurm").glob("*/job.json"))


def test_three_restores_run_as_a_job_array_and_a_rerun_submits_only_what_is_missing(world: dict[str, Any], tmp_path: Path,
                                                                                     capsys: pytest.CaptureFixture[str],
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from hackback.base import log

    monkeypatch.setattr(log, "_out", sys.stdout)  # what hackback prints, captured (it binds stdout at import)
    scripts = [script(tmp_path, "a.rcS", 'echo "a on $(hostname)"'), script(tmp_path, "b.rcS", 'echo "b ran"'),
               script(tmp_path, "fails.rcS", 'echo "about to fail"; exit 3')]
    start = time.monotonic()
    with pytest.raises(TaskFailed) as failed:
        _submit(world, scripts, slurm__wait=True)
    print(f"3 tasks through Slurm: {time.monotonic() - start:.1f} s")
    # The failing script's exit status comes back as a local restore's would: the exit code and the summary.
    assert failed.value.exit_code == 3 and "fails.rcS exited 3 in the guest" in failed.value.message, failed.value.message
    out = capsys.readouterr().out
    assert "submitted Slurm job" in out and "3 runs:" in out and out.count("script exit status 0") == 2
    assert "script exit status 3" in out, out[-2000:]
    runs = sorted((world["root"] / "work" / "runs").iterdir())
    assert len(runs) == 3 and all((r / "manifest.json").is_file() for r in runs)
    info = {r.name: Manifest.read(r).parts["run"]["info"] for r in runs}  # type: ignore[union-attr]
    assert sorted(i["script_status"] for i in info.values()) == ["0", "0", "3"]
    a = next(r for r in runs if "-a-" in r.name)
    assert "a on " in (a / "console.log").read_text()
    assert len(_batches(world)) == 1
    # Rerun: nothing is submitted (the failed script's run is done too), the failure reported again.
    with pytest.raises(TaskFailed):
        _submit(world, scripts, slurm__wait=True)
    assert len(_batches(world)) == 1 and "3 done already" in capsys.readouterr().out
    # One run removed: only that one is submitted.
    import shutil

    shutil.rmtree(a)
    with pytest.raises(TaskFailed):
        _submit(world, scripts, slurm__wait=True)
    batches = _batches(world)
    assert len(batches) == 2 and json.loads(batches[-1].read_text())["rids"] == [a.name]
    assert (a / "manifest.json").is_file()
    # --rerun-failed: only the failed script's run goes again, and it really runs again on the node.
    failing = next(r for r in runs if "-fails-" in r.name)
    before = Manifest.read(failing).parts["run"]["built_at"]  # type: ignore[union-attr]
    with pytest.raises(TaskFailed):
        _submit(world, scripts, slurm__wait=True, slurm__rerun_failed=True)
    batches = _batches(world)
    assert len(batches) == 3 and json.loads(batches[-1].read_text())["rids"] == [failing.name]
    assert Manifest.read(failing).parts["run"]["built_at"] != before  # type: ignore[union-attr]


def test_cancelling_the_job_leaves_no_container_running(world: dict[str, Any], tmp_path: Path) -> None:
    long = script(tmp_path, "long.rcS", "sleep 600")
    _submit(world, [long])
    job = json.loads(_batches(world)[-1].read_text())
    engine = world["engine"]
    ours = str((world["root"] / "work").resolve())

    def containers() -> list[str]:  # the task's: labelled with this work dir
        return [c.id for c in engine.labelled_containers() if c.work_dir == ours and c.state == "running"]

    deadline = time.monotonic() + 180
    while not containers() and time.monotonic() < deadline:
        time.sleep(1)
    assert containers(), "the task's container never started"
    slurm.cancel(job["job_id"])
    deadline = time.monotonic() + 60
    while containers() and time.monotonic() < deadline:
        time.sleep(1)
    assert not containers(), "a cancelled task left its container running"
    status_file = _batches(world)[-1].parent / "status" / "task-0.json"
    deadline = time.monotonic() + 30
    while not status_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    status = json.loads(status_file.read_text())
    assert status["exit_code"] == 130 and "stopped by Slurm" in status["message"], status


def test_a_node_without_the_env_image_loads_the_saved_copy_or_fails_in_one_line(world: dict[str, Any], engine: Engine,
                                                                                 tmp_path: Path) -> None:
    base = next(tags[0] for _id, tags, _l in engine.images() if tags and tags[0].startswith("hackback-base:"))
    ref = f"hackback-test-node-load:{time.time_ns()}"
    assert engine.tag(base, ref)
    saved = tmp_path / "saved.tar"
    engine.save_image(ref, saved)
    engine.remove_image(ref, force=False)  # untags: the base stays
    rec = world["env"].to_json(saved)
    rec["image"] = ref
    try:
        env = cluster._env_here(engine, rec)
        assert env.image == ref and engine.image_id(ref) is not None
    finally:
        engine.remove_image(ref, force=False)
    rec["saved_image"] = str(tmp_path / "gone.tar")
    with pytest.raises(Exception) as missing:
        cluster._env_here(engine, rec)
    assert "is not on this node and its saved copy" in str(missing.value)


def test_bad_cluster_input_is_refused_before_anything_is_submitted(world: dict[str, Any], tmp_path: Path) -> None:
    from hackback.base.errors import ConfigError

    with pytest.raises(ConfigError, match="slurm.time"):
        world["cfg"](slurm__time="four hours")
    with pytest.raises(UsageError, match="one restore, not a job array"):
        _submit(world, [script(tmp_path, "s.rcS", "hackback-checkpoint")], restore__save_checkpoint="child")
    with pytest.raises(ClusterError, match="sbatch refused"):
        _submit(world, [script(tmp_path, "p.rcS", "true")], slurm__partition="no-such-partition")


def test_an_array_of_100_tasks_completes_and_what_each_costs(world: dict[str, Any], tmp_path: Path) -> None:
    """Scale with the gem5 test double: 100 tasks through the single-node cluster.
    Prints the submission time and the per-task overhead outside the container
    (the task's start, config, checks and run directory, not gem5)."""
    scripts = tmp_path / "many"
    scripts.mkdir()
    for i in range(100):
        (scripts / f"s{i:03d}.rcS").write_text(f"#!/bin/sh\necho task {i}\n")
    from hackback.steps import restore

    start = time.monotonic()
    _submit(world, restore.scripts_from([str(scripts)]))  # returns once submitted
    submitted = time.monotonic() - start
    batch = _batches(world)[-1].parent
    job = json.loads((batch / "job.json").read_text())
    assert len(job["rids"]) == 100
    b = cluster.Batch(batch, job["job_id"], tuple(job["rids"]))
    deadline = time.monotonic() + 1200
    while cluster._counts([b])[1] and time.monotonic() < deadline:
        time.sleep(2)
    statuses = [b.status(i) for i in range(100)]
    assert all(s is not None and s["ok"] for s in statuses), [s for s in statuses if not (s and s["ok"])][:3]
    overheads = []
    for s in statuses:
        assert s is not None
        info = Manifest.read(world["root"] / "work" / "runs" / s["rid"]).parts["run"]["info"]  # type: ignore[union-attr]
        overheads.append(s["ended_at"] - s["started_at"] - float(info["container_wall_seconds"]))
    overheads.sort()
    wall = time.monotonic() - start
    print(f"100 tasks: submitted in {submitted:.2f} s, all done in {wall:.0f} s; per-task overhead outside the container "
          f"median {overheads[50]:.2f} s (min {overheads[0]:.2f}, max {overheads[-1]:.2f})")
