"""Checkpoint and restore orchestration against the real Docker engine.

CI has no gem5, so the env image here is the tools image with a test double
for gem5 (tests/data/gem5-standin.py, named as such) as its gem5 binary. It
takes the command line hackback gives configs/hackback_fs.py, writes a
cpt.<tick> directory on a boot, and on a restore runs the readfile script with
bash in place of the guest. It fails if any input is mounted writable. What is
tested is ours: manifests, identity checks and every refusal, read-only mounts,
run directories, exit statuses, no-op reruns, parallel runs, failure paths.
The real gem5 runs are in test_gem5_end_to_end.py (gem5 tier).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hackback.steps import checkpoint, restore
from hackback.base import elf
from hackback.store.hashes import HashCache, digest_of, file_record
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest
from hackback.protocol.context import StepContext
from hackback.base.engine import Engine
from hackback.base.errors import Gem5RunFailed, MismatchError, ScriptFailed, UsageError
from hackback.base.ownership import owner_label
from hackback.store.records import CheckpointArtifact, EnvArtifact, ImageArtifact, KernelArtifact

pytestmark = pytest.mark.docker
DATA = Path(__file__).resolve().parent / "data"
TAGS = ["arm-system-dmb", "x86-add-tlb"]


@pytest.fixture(scope="module")
def standin_image(engine: Engine, tools, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    ctx = tmp_path_factory.mktemp("standin-ctx")
    shutil.copy2(DATA / "gem5-standin.py", ctx / "gem5.opt")
    (ctx / "Dockerfile").write_text(
        "ARG TOOLS\nFROM ${TOOLS}\nCOPY gem5.opt /opt/hackback/bin/gem5.opt\n"
    )
    ref = f"hackback-test-gem5-standin:{digest_of([tools.id, (DATA / 'gem5-standin.py').read_text()])[:12]}"
    engine.build(ctx, ref, phase="standin-image", buildargs={"TOOLS": tools.ref})
    yield ref
    if os.environ.get("HACKBACK_TEST_KEEP_IMAGES") != "1":
        engine.remove_image(ref)


def env_double(tools, image_ref: str, tmp: Path, release: str = "24.0.0.1", tags: list[str] = TAGS,  # type: ignore[no-untyped-def]
               tree: str = "t" * 64, binary: str = "b" * 64) -> EnvArtifact:
    """Test double for an env artifact: the manifest fields hackback reads, the stand-in image."""
    manifest = Manifest("env", "default")
    manifest.set_part("gem5", {"x": 1}, {"image": {"ref": image_ref, "id": "x", "binary": "/opt/hackback/bin/gem5.opt"}},
                      {"gem5_source": {"release": release, "version_tags": tags, "tree_sha256": tree, "commit": None},
                       "gem5_binary_sha256": binary})
    return EnvArtifact("default", tmp, image_ref, tmp / "m5", manifest, tools, None)  # type: ignore[arg-type]


def inputs_double(tmp: Path, hashes: HashCache) -> tuple[ImageArtifact, KernelArtifact]:
    """Test doubles for the image and kernel artifacts: small files with real manifests."""
    img_dir, k_dir = tmp / "images" / "default", tmp / "kernels" / "default"
    img_dir.mkdir(parents=True)
    k_dir.mkdir(parents=True)
    (img_dir / "disk.img").write_bytes(os.urandom(1 << 20))
    # A real ELF with a symbol table (this Python), so the boot's stripped copy is really made.
    shutil.copy2(os.path.realpath(sys.executable), k_dir / "vmlinux")
    im = Manifest("images", "default")
    im.set_part("image", {}, {"disk.img": file_record(img_dir / "disk.img", hashes)}, {"partuuid": "abcd1234-01", "fs_uuid": "u"})
    km = Manifest("kernels", "default")
    km.set_part("kernel", {}, {"vmlinux": file_record(k_dir / "vmlinux", hashes)}, {})
    image = ImageArtifact("default", img_dir, img_dir / "disk.img", img_dir / "vmlinuz", img_dir / "initrd.img",
                          "abcd1234-01", "u", im)
    kernel = KernelArtifact("default", k_dir, k_dir / "vmlinux", None, None, km)
    return image, kernel


@pytest.fixture
def world(engine: Engine, tools, standin_image: str, make_config, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = make_config()
    layout = Layout(cfg.work_dir)
    hashes = HashCache(layout.hash_db)
    image, kernel = inputs_double(tmp_path, hashes)
    env = env_double(tools, standin_image, tmp_path)
    cpt = checkpoint.ensure(StepContext.open(cfg, engine), env, image, kernel)
    return dict(cfg=cfg, layout=layout, hashes=hashes, image=image, kernel=kernel, env=env, cpt=cpt)


def script(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text("#!/bin/bash\n" + body + "\n")
    return p


def snapshot(paths: list[Path]) -> dict[str, tuple[str, int]]:
    out = {}
    for root in paths:
        for p in sorted([root] if root.is_file() else root.rglob("*")):
            if p.is_file():
                out[str(p)] = (HashCache.sha256_uncached(p), p.stat().st_mtime_ns)
    return out


def test_checkpoint_records_what_a_restore_must_match_and_rerun_is_a_no_op(world: dict[str, Any], engine: Engine) -> None:
    cpt, image, kernel = world["cpt"], world["image"], world["kernel"]
    assert cpt.cpt.name.startswith("cpt.") and (cpt.cpt / "m5.cpt").is_file()
    info = cpt.manifest.parts["checkpoint"]["info"]  # as written on disk
    assert info["gem5"]["release"] == "24.0.0.1" and info["gem5"]["version_tags"] == sorted(TAGS)
    assert info["image"]["sha256"] == image.manifest.parts["image"]["outputs"]["disk.img"]["sha256"]
    assert info["kernel"]["sha256"] == kernel.manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"]
    assert info["board"] == {"memory": "2GiB", "cores": 1, "cpu": "atomic"}
    assert "root=PARTUUID=abcd1234-01" in info["kernel_args"] and "init=/sbin/hackback-fastinit" in info["kernel_args"]
    assert (cpt.directory / "console.log").is_file() and (cpt.directory / "gem5.log").is_file()
    assert not list(cpt.directory.glob("board.pc.com_1.device"))
    # gem5 booted a copy without the symbol table (checkpoint.kernel_symbols = false), recorded with its digest.
    stripped = cpt.directory / info["gem5_kernel"]
    assert cpt.outputs[info["gem5_kernel"]]["sha256"] == HashCache.sha256_uncached(stripped)
    assert elf.read(stripped).x86_64 and stripped.stat().st_size < kernel.vmlinux.stat().st_size
    assert cpt.gem5_kernel(kernel.vmlinux) == stripped
    start = time.monotonic()
    again = checkpoint.ensure(StepContext.open(world["cfg"], engine), world["env"], image, kernel)
    assert again.cpt == cpt.cpt and time.monotonic() - start < 5
    # A modified gem5 of the same release does not make the checkpoint stale.
    modified = env_double(world["env"].tools, world["env"].image, cpt.directory, tree="m" * 64, binary="n" * 64)
    assert checkpoint.ensure(StepContext.open(world["cfg"], engine), modified, image, kernel).cpt == cpt.cpt


def test_restore_runs_the_script_and_keeps_its_outputs_and_inputs_untouched(world: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    cpt, image, kernel = world["cpt"], world["image"], world["kernel"]
    before = snapshot([cpt.directory, image.disk, kernel.vmlinux])
    hello = script(tmp_path, "hello.rcS", 'echo "hello from the guest"')
    results = restore.restore(StepContext.open(world["cfg"], engine), world["env"], cpt, [hello])
    assert len(results) == 1
    run = results[0]
    assert str(run.status) == "0" and run.cause == "exit" and not run.reused
    d = run.directory
    assert d.parent == world["layout"].work_dir / "runs"
    for name in ("stats.txt", "config.ini", "config.json", "console.log", "script.rcS", "hackback-result.json", "gem5.log", "manifest.json"):
        assert (d / name).is_file(), name
    assert "hello from the guest" in (d / "console.log").read_text()
    assert (d / "script.rcS").read_text() == hello.read_text()
    rec = Manifest.read(d).parts["run"]  # type: ignore[union-attr]
    assert rec["info"]["script"]["sha256"] == HashCache.sha256_uncached(hello)
    assert rec["info"]["stats"]["simInsts"] == 12345 and "roi" not in rec["info"]
    assert rec["info"]["board"]["memory"] == "2GiB"
    # The stand-in exits 70 if any input were writable; and nothing read changed.
    assert snapshot([cpt.directory, image.disk, kernel.vmlinux]) == before
    # The same inputs again: a no-op.
    start = time.monotonic()
    again = restore.restore(StepContext.open(world["cfg"], engine), world["env"], cpt, [hello])
    assert again[0].reused and again[0].directory == d and time.monotonic() - start < 5


def test_the_script_exit_status_is_the_restore_exit_status(world: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    three = script(tmp_path, "three.rcS", "echo failing on purpose; exit 3")
    with pytest.raises(ScriptFailed) as e:
        restore.restore(StepContext.open(world["cfg"], engine), world["env"], world["cpt"], [three])
    assert e.value.exit_code == 3 and "exited 3" in e.value.message
    kept = list((world["layout"].work_dir / "runs").glob("*three*"))
    assert len(kept) == 1 and "failing on purpose" in (kept[0] / "console.log").read_text()


def test_several_scripts_run_in_parallel_each_in_its_own_run(world: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    cfg = dataclasses.replace(world["cfg"], restore=dataclasses.replace(world["cfg"].restore, jobs=2))
    scripts = [script(tmp_path, f"s{i}.rcS", f"sleep 2; echo run {i}") for i in range(3)]
    start = time.monotonic()
    results = restore.restore(StepContext.open(cfg, engine), world["env"], world["cpt"], scripts)
    assert sorted(str(r.status) for r in results) == ["0", "0", "0"]
    assert len({r.directory for r in results}) == 3
    for i, r in enumerate(results):
        assert f"run {i}" in (r.directory / "console.log").read_text()
    assert not [n for _i, n, owner in engine.containers(all_owners=True) if owner == owner_label()]
    print(f"3 stand-in restores, 2 at a time: {time.monotonic() - start:.1f}s")


def test_restore_refuses_a_changed_image_kernel_or_gem5(world: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    cfg, env, cpt = world["cfg"], world["env"], world["cpt"]
    hello = script(tmp_path, "hello.rcS", "echo hi")
    copy = tmp_path / "copy.img"
    shutil.copy2(world["image"].disk, copy)
    with open(copy, "r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(MismatchError, match="disk image .* is not the one checkpoint 'default' was taken with"):
        restore.restore(StepContext.open(cfg, engine), env, cpt, [hello], disk=copy)
    kcopy = tmp_path / "vmlinux"
    kcopy.write_bytes(world["kernel"].vmlinux.read_bytes() + b"x")
    with pytest.raises(MismatchError, match="kernel"):
        restore.restore(StepContext.open(cfg, engine), env, cpt, [hello], kernel=kcopy)
    with pytest.raises(MismatchError, match="release 23.1.0.0"):
        restore.restore(StepContext.open(cfg, engine), env_double(env.tools, env.image, tmp_path, release="23.1.0.0"), cpt, [hello])
    with pytest.raises(MismatchError, match="version tags"):
        restore.restore(StepContext.open(cfg, engine), env_double(env.tools, env.image, tmp_path, tags=TAGS + ["x86-new"]), cpt, [hello])
    assert not (world["layout"].work_dir / "runs").exists()


def test_a_modified_gem5_of_the_same_release_is_allowed_with_a_warning_and_recorded(world: dict[str, Any], engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = world["env"]
    modified = env_double(env.tools, env.image, tmp_path, tree="m" * 64, binary="n" * 64)
    results = restore.restore(StepContext.open(world["cfg"], engine), modified, world["cpt"], [script(tmp_path, "a.rcS", "echo a")])
    assert "different 24.0.0.1 tree" in capsys.readouterr().err
    info = Manifest.read(results[0].directory).parts["run"]["info"]  # type: ignore[union-attr]
    assert info["gem5"]["tree_sha256"] == "m" * 64 and info["gem5_warnings"]


def test_a_boot_that_ends_without_a_checkpoint_leaves_no_checkpoint_and_keeps_its_logs(engine: Engine, tools, standin_image: str, make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(checkpoint__kernel_args="standin=no-checkpoint")
    hashes = HashCache(Layout(cfg.work_dir).hash_db)
    image, kernel = inputs_double(tmp_path, hashes)
    with pytest.raises(Gem5RunFailed) as e:
        checkpoint.ensure(StepContext.open(cfg, engine), env_double(tools, standin_image, tmp_path), image, kernel)
    assert "the guest called m5 exit" in e.value.message and "expected a checkpoint" in e.value.message
    assert not (cfg.work_dir / "checkpoints" / "default").exists()
    kept = cfg.work_dir / "failed" / "checkpoints-default"
    assert (kept / "console.log").is_file() and str(kept) in e.value.hint
    assert not list((cfg.work_dir / ".tmp").iterdir())


def test_a_gem5_that_crashes_is_reported_with_its_error_line(engine: Engine, tools, standin_image: str, make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(checkpoint__kernel_args="standin=crash")
    image, kernel = inputs_double(tmp_path, HashCache(Layout(cfg.work_dir).hash_db))
    with pytest.raises(Gem5RunFailed, match="gem5 fatal: stand-in told to crash"):
        checkpoint.ensure(StepContext.open(cfg, engine), env_double(tools, standin_image, tmp_path), image, kernel)


@pytest.mark.parametrize("ending,says", [
    ("exit-after-result", "gem5 exited 1 after the run ended as expected"),
    ("no-stats", "gem5 wrote no stats.txt"),
    ("cut-stats", "stats.txt is cut short (1 dump(s) begun, 0 complete)"),
    ("missing-dump", "stats.txt holds 1 dump(s), the run script made 2"),
])
def test_an_ok_result_is_not_a_success_when_gem5_exits_badly_or_its_stats_are_lost(
        world: dict[str, Any], engine: Engine, tmp_path: Path, ending: str, says: str) -> None:
    """The run script writes an ok result before gem5's exit-time work (its final
    stats dump): a gem5 that dies after it, or whose stats are missing, cut short
    or short of a dump, fails the run in one line; no run is kept as if complete."""
    s = script(tmp_path, f"{ending}.rcS", f"# standin={ending}\necho ran")
    with pytest.raises(Gem5RunFailed) as e:
        restore.restore(StepContext.open(world["cfg"], engine), world["env"], world["cpt"], [s])
    assert says in e.value.message, e.value.message
    assert len(e.value.one_line().splitlines()) == 1
    assert not list((world["layout"].work_dir / "runs").glob(f"*{ending}*"))
    assert list((world["layout"].work_dir / "failed").glob(f"runs-*{ending}*"))


def test_a_checkpoint_taken_during_a_restore_is_an_error_and_no_run_is_kept(world: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    s = script(tmp_path, "child.rcS", "/sbin/m5 checkpoint")
    with pytest.raises(Gem5RunFailed) as e:
        restore.restore(StepContext.open(world["cfg"], engine), world["env"], world["cpt"], [s])
    assert "asked for a checkpoint" in e.value.message and "--save-checkpoint NAME" in e.value.hint
    assert not list((world["layout"].work_dir / "runs").glob("*child*"))
    assert list((world["layout"].work_dir / "failed").glob("runs-*child*"))


def test_a_checkpoint_directory_without_a_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="holds no hackback checkpoint"):
        CheckpointArtifact.read(tmp_path)


def test_the_standin_does_notice_a_writable_input(world: dict[str, Any], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that the read-only assertions above are not vacuous."""
    from hackback.services import gem5run
    from hackback.base.engine import Mount

    real = gem5run.mounts

    def with_writable_disk(job: gem5run.Gem5Job) -> list[Mount]:
        return [dataclasses.replace(m, read_only=False) if m.container == gem5run.DISK_MNT else m for m in real(job)]

    monkeypatch.setattr(gem5run, "mounts", with_writable_disk)
    with pytest.raises(Gem5RunFailed, match="an input is mounted writable"):
        restore.restore(StepContext.open(world["cfg"], engine), world["env"], world["cpt"], [script(tmp_path, "w.rcS", "true")])


def test_a_restore_takes_the_checkpoint_as_it_was_made_not_as_the_config_says_now(engine: Engine, tools, standin_image: str, make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """After `invoke checkpoint --cores 2`, a plain `invoke restore` (config: 1 core)
    uses that 2-core checkpoint: nothing is re-derived, no new boot."""
    two = make_config(checkpoint__cores=2)
    hashes = HashCache(Layout(two.work_dir).hash_db)
    image, kernel = inputs_double(tmp_path, hashes)
    env = env_double(tools, standin_image, tmp_path)
    taken = checkpoint.ensure(StepContext.open(two, engine), env, image, kernel)
    plain = make_config()
    assert plain.checkpoint.cores == 1
    found = checkpoint.existing(plain)
    assert found is not None and found.cpt == taken.cpt and found.info.board.cores == 2
    runs = restore.restore(StepContext.open(plain, engine), env, found, [script(tmp_path, "hi.rcS", "echo hi")])
    assert Manifest.read(runs[0].directory).parts["run"]["info"]["board"]["cores"] == 2  # type: ignore[union-attr]
    again = checkpoint.existing(plain)
    assert again is not None and again.cpt == taken.cpt and again.manifest.parts == taken.manifest.parts


def test_a_restore_can_save_the_child_checkpoint_its_script_asks_for(world: dict[str, Any], engine: Engine, tmp_path: Path,
                                                                     make_config) -> None:  # type: ignore[no-untyped-def]
    setup = tmp_path / "setup.sh"
    setup.write_text("#!/bin/sh\necho set up\nhackback-checkpoint\n")
    cfg = dataclasses.replace(world["cfg"], restore=dataclasses.replace(world["cfg"].restore, save_checkpoint="roi"))
    ctx = StepContext.open(cfg, engine)
    [made] = restore.restore(ctx, world["env"], world["cpt"], [setup])
    child = CheckpointArtifact.read(made.directory)
    assert child.directory == world["layout"].artifact_dir("checkpoints", "roi") and made.cause == "checkpoint"
    info = child.manifest.parts["checkpoint"]["info"]  # as written on disk
    parent = world["cpt"]
    parent_info = parent.manifest.parts["checkpoint"]["info"]
    assert info["parent"] == {"name": "default", "directory": str(parent.directory), "cpt": parent.cpt.name,
                              "identity": parent.identity_digest()}
    assert info["made_by"]["script"]["sha256"] == HashCache.sha256_uncached(setup) and info["made_by"]["cpu"] == "atomic"
    assert info["image"] == parent_info["image"] and info["kernel"] == parent_info["kernel"] and info["tick"] > parent_info["tick"]
    assert (child.cpt / "m5.cpt").is_file()
    if parent_info.get("gem5_kernel"):  # the stripped kernel, linked from the parent
        assert (child.directory / "vmlinux").stat().st_ino == (parent.directory / "vmlinux").stat().st_ino
    # The same again is a no-op; a restore of the child runs from it.
    assert restore.restore(ctx, world["env"], world["cpt"], [setup])[0].reused
    runs = restore.restore(StepContext.open(world["cfg"], engine), world["env"], child, [script(tmp_path, "next.rcS", "echo next")])
    assert runs[0].run_id.startswith("roi-") and str(runs[0].status) == "0"
    with pytest.raises(UsageError, match="takes one script"):
        restore.restore(ctx, world["env"], world["cpt"], [setup, script(tmp_path, "other.rcS", "true")])
