"""`invoke image`. Template rendering needs nothing; the check runs on a small
image the test makes (Docker tier); the real two-stage build, its check, and a
boot of the result under QEMU TCG are the QEMU tier. CI has no gem5, so the m5
installed there is tests/data/m5-standin.c (compiled static by the m5_standin
fixture), a test double that records its calls on the console."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hackback.store.records import DISK, ImageArtifact
from hackback.protocol.context import StepContext
from hackback.base import config
from hackback.steps import image
from hackback.services import qemu
from hackback.store.hashes import HashCache
from hackback.store.layout import Layout
from hackback.base.engine import Engine, Mount, RunSpec
from hackback.base.errors import ArtifactError, UsageError

REPO = Path(__file__).resolve().parent.parent


def rendered(**over: object) -> dict:
    params = dict(image._PLACEHOLDERS, **over)
    return image.render_template(params)


def test_template_provisions_an_existing_raw_disk_with_its_own_kernel() -> None:
    b = rendered(kernel="/k/vmlinuz", initrd="/k/initrd.img", append="root=PARTUUID=abcd1234-01 console=ttyS0")["builders"][0]
    assert b["type"] == "qemu" and b["disk_image"] is True and b["format"] == "raw"
    assert b["iso_checksum"] == "none"
    args = {a[0]: a[1] for a in b["qemuargs"]}
    assert args["-kernel"] == "/k/vmlinuz" and args["-initrd"] == "/k/initrd.img"
    assert "root=PARTUUID=abcd1234-01" in args["-append"]
    assert "-accel" not in args and "-machine" not in args  # Packer sets accel itself
    assert b["ssh_handshake_attempts"] >= 100


def test_template_digest_ignores_nothing_that_matters() -> None:
    assert rendered(accel="kvm") != rendered(accel="tcg")
    assert json.dumps(rendered(), sort_keys=True) == json.dumps(rendered(), sort_keys=True)


def test_template_file_is_a_packer_qemu_template_for_an_existing_disk() -> None:
    data = json.loads((image.GUEST / image.TEMPLATE).read_text())
    (builder,) = data["builders"]
    assert builder["type"] == "qemu" and builder["disk_image"] is True
    assert "{{" in json.dumps(data)  # it is a template: the values come from render_template


def test_render_fills_every_placeholder_keeping_types() -> None:
    provisioners = [{"type": "file", "source": "/w/files/", "destination": "/tmp/hackback/"}]
    out = rendered(size_mib=4096, memory_mib=1024, password="s3cret", provisioners=provisioners)
    text = json.dumps(out)
    assert "{{" not in text and "}}" not in text
    assert "_comment" not in out  # notes in the file are not part of the template (nor of its digest)
    b = out["builders"][0]
    assert b["disk_size"] == "4096M" and b["ssh_password"] == "s3cret" and b["vm_name"] == DISK
    assert dict(b["qemuargs"])["-m"] == "1024M"
    assert b["disk_image"] is True and b["ssh_handshake_attempts"] == 500  # typed values stay typed
    assert out["provisioners"] == provisioners  # a list placeholder takes the list


def test_a_whole_string_placeholder_takes_the_value_with_its_type() -> None:
    assert image._fill({"a": ["{{n}}", "x{{n}}y"]}, {"n": 3}) == {"a": [3, "x3y"]}
    with pytest.raises(KeyError):
        image._fill("{{unknown}}", {})


def test_inputs_change_with_what_goes_into_the_image(make_config) -> None:  # type: ignore[no-untyped-def]
    class Tools:
        id = "sha256:tools"

    a = image.inputs(make_config(), Tools(), "m5sha")  # type: ignore[arg-type]
    assert a == image.inputs(make_config(), Tools(), "m5sha")  # type: ignore[arg-type]
    assert a != image.inputs(make_config(), Tools(), "other")  # type: ignore[arg-type]
    assert a != image.inputs(make_config(image__packages=["systemd-sysv"]), Tools(), "m5sha")  # type: ignore[arg-type]
    assert a == image.inputs(make_config(image__accel="tcg", image__stall_timeout=60), Tools(), "m5sha")  # type: ignore[arg-type]


# ---------------------------------------------------------------- Docker tier: the check on a small image


def make_small_image(engine: Engine, tools_ref: str, out: Path, m5: Path, with_autologin: bool = True,
                     part_sectors: int = 0) -> Path:
    """A 21 MiB disk with a 20 MiB ext4 partition at 1 MiB; part_sectors > 0 makes the
    partition table give it that many sectors instead (a partition shorter than its filesystem)."""
    guest = image.GUEST
    script = f"""set -e
mkdir -p /t/root /t/usr/sbin /t/etc/systemd/system/serial-getty@ttyS0.service.d
ln -s usr/sbin /t/sbin
cp /m5/{m5.name} /t/usr/sbin/m5
cp /g/hack_back_ckpt.rcS /t/root/
cp /g/fastinit /t/usr/sbin/hackback-fastinit
cat /g/bashrc-hook.sh > /t/root/.bashrc
{"cp /g/autologin.conf /t/etc/systemd/system/serial-getty@ttyS0.service.d/" if with_autologin else "true"}
mke2fs -q -t ext4 -d /t /tmp/p.img 20M
truncate -s 21M /out/small.img
printf 'label: dos\\nlabel-id: 0x0badcafe\\nstart=2048, {f"size={part_sectors}, " if part_sectors else ""}type=83\\n' | sfdisk -q /out/small.img
dd if=/tmp/p.img of=/out/small.img bs=1M seek=1 conv=notrunc status=none
"""
    engine.run(RunSpec(tools_ref, ["bash", "-c", script], step="t-small-image", kvm=False, mounts=[
        Mount(guest, "/g"), Mount(m5.parent, "/m5"), Mount(out, "/out", read_only=False)]), on_line=lambda _l: None)
    return out / "small.img"


@pytest.mark.docker
def test_check_accepts_a_good_image_and_names_what_is_wrong(engine: Engine, tools, m5_standin: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m5_sha = HashCache.sha256_uncached(m5_standin)
    good = make_small_image(engine, tools.ref, tmp_path, m5_standin)
    assert image.check(engine, tools, good, image.expected_facts(m5_sha, disk_id="0badcafe")) == []
    wrong_m5 = image.check(engine, tools, good, image.expected_facts("0" * 64))
    assert len(wrong_m5) == 1 and "/sbin/m5" in wrong_m5[0]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    no_login = make_small_image(engine, tools.ref, bad_dir, m5_standin, with_autologin=False)
    problems = image.check(engine, tools, no_login, image.expected_facts(m5_sha))
    assert problems == [f"SHA {image.AUTOLOGIN_PATH}: expected {image.expected_facts(m5_sha)[f'SHA {image.AUTOLOGIN_PATH}']}, found missing"]


@pytest.mark.docker
def test_check_refuses_a_file_that_is_not_a_disk(engine: Engine, tools, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    problems = image.check(engine, tools, junk, image.expected_facts("x"))
    assert problems and "no partition table" in problems[0]


@pytest.mark.docker
class TestCheckSizes:
    """`invoke image --check` on a disk whose partition or file is shorter than the
    filesystem in it: both look fine until the guest touches the blocks past the end."""

    def test_a_partition_shorter_than_its_filesystem(self, engine: Engine, tools, m5_standin: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        short = make_small_image(engine, tools.ref, tmp_path, m5_standin, part_sectors=30720)  # 15 MiB for a 20 MiB ext4
        problems = image.check(engine, tools, short, image.expected_facts(HashCache.sha256_uncached(m5_standin)))
        assert problems == [f"partition 1 is {30720 * 512} bytes, shorter than its ext4 filesystem ({20 << 20} bytes)"]

    def test_a_disk_file_cut_short(self, engine: Engine, tools, m5_standin: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        disk = make_small_image(engine, tools.ref, tmp_path, m5_standin)
        os.truncate(disk, 16 << 20)
        problems = image.check(engine, tools, disk, image.expected_facts(HashCache.sha256_uncached(m5_standin)))
        assert any("a truncated copy" in p for p in problems), problems

    def test_check_existing_fails_in_one_line(self, engine: Engine, tools, m5_standin: Path, session_work: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        short = make_small_image(engine, tools.ref, tmp_path, m5_standin, part_sectors=30720)
        cfg = config.load(flags={"work_dir": str(session_work)}, environ={})  # where the tools fixture built
        with pytest.raises(ArtifactError, match="shorter than its ext4 filesystem") as e:
            image.check_existing(StepContext.open(cfg, engine), short, m5_standin)
        assert "\n" not in e.value.one_line()


class TestM5Refused:
    """A bad m5 handed to image.ensure is refused before an engine is asked for or
    anything is written (the config check refuses --m5 earlier still)."""

    @pytest.mark.parametrize("what", ["missing", "directory", "script"])
    def test_before_anything_is_touched(self, make_config, tmp_path: Path, what: str) -> None:  # type: ignore[no-untyped-def]
        m5 = tmp_path / "m5"
        if what == "directory":
            m5.mkdir()
        elif what == "script":
            m5.write_text("#!/bin/sh\n")
        cfg = make_config()
        with pytest.raises(UsageError) as e:
            image.ensure(StepContext.open(cfg), m5)
        line = e.value.one_line()
        assert str(m5) in line and "--m5" in line and "\n" not in line
        assert not cfg.work_dir.exists()


# ---------------------------------------------------------------- QEMU tier: the real build


@pytest.fixture(scope="module")
def built(engine: Engine, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[config.Config, ImageArtifact, Path]:
    """The image this tier boots, and the m5 in it. Where the gem5 tier runs, the
    one image it builds with the real m5 (QEMU boots it with hackback.m5=off);
    elsewhere one with the m5 stand-in."""
    from conftest import gem5_tier_reason

    if not gem5_tier_reason():
        world = request.getfixturevalue("gem5_world")
        cfg = config.load(flags={"work_dir": str(world["work"])}, environ={})
        return cfg, ImageArtifact.read(world["image"]), world["env"] / "m5"
    work = os.environ.get("HACKBACK_TEST_IMAGE_WORK_DIR") or str(tmp_path_factory.mktemp("imgwork"))
    standin: Path = request.getfixturevalue("m5_standin")
    cfg = config.load(flags={"work_dir": work, "image.m5": str(standin)}, environ={})
    return cfg, image.ensure(StepContext.open(cfg, engine), standin), standin


@pytest.mark.qemu
def test_build_yields_a_checked_image_with_a_manifest(built, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    cfg, art, m5 = built
    base, rec = art.manifest.parts["base"], art.manifest.parts["image"]
    assert base["inputs"]["m5_sha256"] == HashCache.sha256_uncached(m5)
    assert rec["inputs"]["base"] and set(base["outputs"]) >= {"base.img", "vmlinuz", "initrd.img", "hackback-guest"}
    assert rec["outputs"]["disk.img"]["size"] == cfg.image.size_mib * 2**20
    info = rec["info"]
    assert info["allocated_bytes"] < info["virtual_bytes"]  # sparse on the host
    assert info["packages"]["systemd"] and info["accelerator"] in ("kvm", "tcg")
    assert art.partuuid.endswith("-01")
    st = art.disk.stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert not any(Layout(cfg.work_dir).tmp_dir.iterdir())


@pytest.mark.qemu
def test_rerun_is_a_no_op(built, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    cfg, art, m5 = built
    start = time.monotonic()
    again = image.ensure(StepContext.open(cfg, engine), m5)
    assert time.monotonic() - start < 5
    assert again.manifest.parts == art.manifest.parts


@pytest.mark.qemu
def test_image_boots_logs_in_and_checkpoints_once(built, engine: Engine, tools, m5_standin: Path) -> None:  # type: ignore[no-untyped-def]
    _cfg, art, m5 = built
    if m5 != m5_standin:
        pytest.skip("the image has the real m5 (gem5 tier): it cannot record its calls under QEMU; the gem5 tier "
                    "shows the checkpoint taken once, tests/test_rcs.py the once-per-boot logic")
    sha_before = HashCache.sha256_uncached(art.disk)
    met, lines = qemu.boot(
        engine, tools.ref,
        # hackback.m5=command: hackback-guest calls the image's m5 (the stand-in, which records each call).
        qemu.QemuBoot(art.disk, art.kernel, initrd=art.initrd,
                      append=f"root=PARTUUID={art.partuuid} console=ttyS0 hackback.m5=command", timeout=900),
        until=lambda ln: ln.startswith("HACKBACK-AGAIN"),
    )
    text = "\n".join(lines)
    assert met, f"no second login seen; console tail:\n" + "\n".join(lines[-30:])
    assert "root (automatic login)" in text
    calls = [ln.split("HACKBACK-M5-STANDIN ", 1)[1] for ln in lines if "HACKBACK-M5-STANDIN " in ln]
    assert calls[:2] == ["checkpoint", "readfile"], calls
    assert calls.count("checkpoint") == 1  # the second login took none
    assert HashCache.sha256_uncached(art.disk) == sha_before  # booting never writes the image


@pytest.mark.qemu
def test_marker_mode_makes_no_m5_call(built, engine: Engine, tools) -> None:  # type: ignore[no-untyped-def]
    _cfg, art, _ = built
    met, lines = qemu.boot(
        engine, tools.ref,
        qemu.QemuBoot(art.disk, art.kernel, initrd=art.initrd,
                      append=f"root=PARTUUID={art.partuuid} console=ttyS0 hackback.m5=off", timeout=900),
        until=lambda ln: "HACKBACK-SCRIPT-EXIT" in ln,
    )
    assert met, "\n".join(lines[-30:])
    assert not any("HACKBACK-M5-STANDIN" in ln for ln in lines)
    assert any(ln.startswith("HACKBACK-MARK m5 checkpoint") for ln in lines)
    assert any("HACKBACK-SCRIPT-EXIT empty" in ln for ln in lines)


@pytest.mark.qemu
def test_check_task_on_the_built_image(built) -> None:  # type: ignore[no-untyped-def]
    cfg, art, _ = built
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env["HACKBACK_WORK_DIR"] = str(cfg.work_dir)
    out = subprocess.run([sys.executable, "-m", "invoke", "image", "--check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "is a hack-back image" in out.stdout


@pytest.mark.qemu
@pytest.mark.parametrize("stage_line", ["==> image stage 1", "==> image stage 2"])
def test_ctrl_c_in_a_stage_leaves_nothing(engine: Engine, m5_standin: Path, tmp_path: Path, stage_line: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(tmp_path / "work"), HACKBACK_IMAGE_M5=str(m5_standin))
    # Ctrl-C as a terminal delivers it, even when this test runs in the background with SIGINT ignored.
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "image"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    deadline = time.monotonic() + 900
    for line in proc.stdout:
        if line.startswith(stage_line):
            time.sleep(8)  # let the stage's container get going
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:]
    assert "interrupted" in out
    assert not (tmp_path / "work" / "images" / "default").exists()
    assert not any((tmp_path / "work" / ".tmp").iterdir())
    assert [c for c in engine.containers(all_owners=True) if c[2].endswith(f":{proc.pid}")] == []


def test_watchdog_fires_only_after_the_limit_without_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = tmp_path / "console.log"
    console.write_text("[    1.0] booting\nhackback login: \n")
    clock = [1000.0]
    monkeypatch.setattr(image.time, "monotonic", lambda: clock[0])
    watch = image._Watchdog(console, limit=60)
    assert watch.check() is None  # first look: the console grew
    clock[0] += 59
    assert watch.check() is None
    with console.open("a") as f:
        f.write("more output\n")
    clock[0] += 59
    assert watch.check() is None  # growth is progress
    watch.progress()  # so is a Packer line
    clock[0] += 61
    reason = watch.check()
    assert reason is not None and "for 61s" in reason and "more output" in reason
