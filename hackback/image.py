"""`invoke image`: the hack-back disk image, in two stages inside the tools image.

1. Base system: debootstrap from the configured mirror, ext4 built straight from
   the tree (mke2fs -d) and laid into a raw disk with sfdisk + dd (sparse, no loop
   devices). Runs as root with CAP_SYS_ADMIN only (debootstrap's chroot mounts).
2. Provisioning: Packer's qemu builder boots that disk with its own kernel and
   initrd and installs m5, the serial autologin and the rcS over SSH.
A watchdog fails a guest that stops making progress within image.stall_timeout,
with its console's tail. Every build ends with a static check of the result.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import accel as _accel
from . import elf, log
from .artifacts import HashCache, Layout, Manifest, build_unless_fresh, digest_of, file_record, require_free
from .base import ToolsImage, ensure_tools
from .config import Config
from .engine import Engine, Mount, RunSpec
from .errors import ArtifactError, UsageError

GUEST = Path(__file__).resolve().parent / "guest"
GUEST_FILES = ("stage1.sh", "provision.sh", "hack_back_ckpt.rcS", "autologin.conf", "bashrc-hook.sh", "check.sh", "fastinit")
FASTINIT = "/sbin/hackback-fastinit"  # init= for a fast boot (no init system)
WORK_MNT = "/hackback/work"
GUEST_MNT = "/hackback/guest"
DISK = "disk.img"
AUTOLOGIN_PATH = "/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"


@dataclass(frozen=True)
class ImageArtifact:
    name: str
    directory: Path
    disk: Path
    kernel: Path  # the image's own kernel and initrd, for trying it under QEMU
    initrd: Path
    partuuid: str  # root=PARTUUID=<this> finds the root partition without an initrd
    fs_uuid: str
    manifest: Manifest


def inputs(cfg: Config, tools: ToolsImage, m5_sha256: str) -> dict[str, Any]:
    img = cfg.image
    return {
        "tools_image": tools.id,
        "guest_files": {name: HashCache.quick_sha256(GUEST / name) for name in GUEST_FILES},
        "template": digest_of(render_template(_PLACEHOLDERS)),
        "distribution": img.distribution,
        "suite": img.suite,
        "mirror": img.mirror,
        "packages": list(img.packages),
        "size_mib": img.size_mib,
        "m5_sha256": m5_sha256,
    }


def ensure(cfg: Config, m5: Path, force: bool = False, engine: Optional[Engine] = None) -> ImageArtifact:
    problem = elf.static_x86_64_problem(m5)  # before anything is touched: it goes into the image as it is
    if problem:
        raise UsageError(f"m5 binary {m5} {problem}", "build it with `invoke env`, or give a static x86-64 m5 with --m5 PATH")
    engine = engine or Engine.connect()
    layout = Layout(cfg.work_dir)
    hashes = HashCache(layout.hash_db)
    tools = ensure_tools(cfg, engine, layout)
    want = inputs(cfg, tools, hashes.sha256(m5))

    def build(tmp: Path, manifest: Manifest) -> None:
        require_free(layout.work_dir, 2 * cfg.image.size_mib * 2**20 + (2 << 30), "building the disk image")
        _build(cfg, engine, layout, hashes, tools, m5, want, manifest, tmp)

    done = build_unless_fresh(layout, "images", cfg.name, "image", want, force, build, f"image '{cfg.name}'")
    return _artifact(cfg.name, done.directory, done.manifest)


def load(directory: Path) -> ImageArtifact:
    """A built image from its directory, without checking it is up to date."""
    manifest = Manifest.read(directory)
    if manifest is None or "image" not in manifest.parts:
        raise UsageError(f"{directory} holds no hackback image (no manifest)", "build one with `invoke image`")
    return _artifact(manifest.name, directory, manifest)


def _artifact(name: str, directory: Path, manifest: Manifest) -> ImageArtifact:
    info = manifest.parts["image"]["info"]
    return ImageArtifact(
        name, directory, directory / DISK, directory / "vmlinuz", directory / "initrd.img",
        info["partuuid"], info["fs_uuid"], manifest,
    )


def _build(cfg: Config, engine: Engine, layout: Layout, hashes: HashCache, tools: ToolsImage, m5: Path,
           want: dict[str, Any], manifest: Manifest, tmp: Path) -> None:
    seed = digest_of(want)  # same inputs, same identifiers
    fs_uuid = str(uuid.UUID(seed[:32]))
    disk_id = seed[32:40]
    times: dict[str, float] = {}
    password = secrets.token_hex(12)  # for Packer's SSH only: provisioning locks root

    start = time.monotonic()
    with log.step(f"image stage 1: {cfg.image.suite} from {cfg.image.mirror} into a raw disk"):
        stage1 = tmp / "stage1"
        stage1.mkdir()
        spec = RunSpec(
            tools.ref, ["bash", f"{GUEST_MNT}/stage1.sh"], step="image-stage1",
            mounts=[Mount(GUEST, GUEST_MNT), Mount(stage1, "/out", read_only=False)],
            environment={
                "SUITE": cfg.image.suite, "MIRROR": cfg.image.mirror, "PACKAGES": " ".join(cfg.image.packages),
                "SIZE_MIB": str(cfg.image.size_mib), "FS_UUID": fs_uuid, "DISK_ID": disk_id,
                "ROOT_PASSWORD": password, "OWNER": f"{os.getuid()}:{os.getgid()}",
            },
            as_root=True, cap_add=["SYS_ADMIN"], kvm=False,
        )
        engine.run(spec, phase="image:stage1", on_line=_phase_printer("image:stage1"))
    times["stage1_seconds"] = time.monotonic() - start

    start = time.monotonic()
    accel = _accel.choose(cfg.image.accel, engine, layout, tools.ref, tools.versions.get("qemu", ""), stage1 / "vmlinuz")
    partuuid = f"{disk_id}-01"
    with log.step(f"image stage 2: Packer + QEMU ({accel}) provisioning"):
        _provision(cfg, engine, tools, m5, stage1, tmp, accel, password, partuuid)
    times["stage2_seconds"] = time.monotonic() - start

    for name in ("vmlinuz", "initrd.img", "packages.tsv"):
        os.replace(stage1 / name, tmp / name)
    shutil.rmtree(stage1)
    expect = expected_facts(hashes.sha256(m5), fs_uuid, disk_id)
    problems = check(engine, tools, tmp / DISK, expect)
    if problems:
        raise ArtifactError(f"the built image failed its check: {problems[0]}", f"{len(problems)} problem(s); see the lines above")
    st = (tmp / DISK).stat()
    manifest.set_part(
        "image",
        want,
        {name: file_record(tmp / name, hashes) for name in (DISK, "vmlinuz", "initrd.img")},
        {
            "partuuid": partuuid,
            "fs_uuid": fs_uuid,
            "root_kernel_arg": f"root=PARTUUID={partuuid}",
            "virtual_bytes": st.st_size,
            "allocated_bytes": st.st_blocks * 512,
            "accelerator": accel,
            "tools_image": tools.ref,
            "tools": tools.versions,
            "packages": _read_packages(tmp / "packages.tsv"),
            **{k: round(v, 1) for k, v in times.items()},
        },
    )
    log.info(f"image: {st.st_size / 2**30:.1f} GiB virtual, {st.st_blocks * 512 / 2**30:.2f} GiB allocated; "
             f"stage 1 {log.format_seconds(times['stage1_seconds'])}, stage 2 {log.format_seconds(times['stage2_seconds'])}")


def _phase_printer(phase: str) -> Any:
    def show(line: str) -> None:
        marker = next((m for m in ("HACKBACK-PHASE ", "HACKBACK-STEP ") if m in line), None)
        if marker:
            log.info(f"--- {line.split(marker, 1)[1]}")
        else:
            log.stream(phase, line)

    return show


def _read_packages(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        name, _, version = line.partition("\t")
        out[name] = version
    return out


# ---------------------------------------------------------------- stage 2: Packer

_PLACEHOLDERS: dict[str, Any] = dict(
    base="BASE", kernel="KERNEL", initrd="INITRD", append="APPEND", output="OUT", size_mib=0,
    accel="tcg", memory_mib=0, serial="SERIAL", files="FILES", script="SCRIPT", password="PW",
)


def render_template(p: dict[str, Any]) -> dict[str, Any]:
    """Packer 1.6.6 JSON template (qemu builder) for provisioning an existing raw disk."""
    return {
        "builders": [
            {
                "type": "qemu",
                "accelerator": p["accel"],
                "disk_image": True,
                "iso_url": p["base"],
                "iso_checksum": "none",
                "format": "raw",
                "disk_size": f"{p['size_mib']}M",  # must be >= the base disk: the same
                "disk_interface": "virtio",
                "net_device": "virtio-net",
                "output_directory": p["output"],  # must not exist yet
                "vm_name": DISK,
                "headless": True,
                "vnc_bind_address": "127.0.0.1",
                "boot_wait": "1s",
                "communicator": "ssh",
                "ssh_username": "root",
                "ssh_password": p["password"],
                "ssh_timeout": "60m",  # the watchdog fails a stuck guest long before this
                "ssh_handshake_attempts": 500,  # slow TCG boots trip Packer's default
                "shutdown_command": "systemctl poweroff",
                "shutdown_timeout": "10m",
                # The image's own kernel and initrd: the disk has no bootloader.
                "qemuargs": [
                    ["-m", f"{p['memory_mib']}M"],
                    ["-kernel", p["kernel"]],
                    ["-initrd", p["initrd"]],
                    ["-append", p["append"]],
                    ["-serial", f"file:{p['serial']}"],
                ],
            }
        ],
        "provisioners": [
            {"type": "shell", "inline": ["mkdir -p /tmp/hackback"]},
            {"type": "file", "source": p["files"] + "/", "destination": "/tmp/hackback/"},
            {"type": "shell", "script": p["script"]},
        ],
    }


def _provision(cfg: Config, engine: Engine, tools: ToolsImage, m5: Path, stage1: Path, tmp: Path,
               accel: str, password: str, partuuid: str) -> None:
    work = tmp / "packer"
    files = work / "files"
    files.mkdir(parents=True)
    shutil.copy2(m5, files / "m5")
    for name in ("hack_back_ckpt.rcS", "autologin.conf", "bashrc-hook.sh", "fastinit"):
        shutil.copy2(GUEST / name, files / name)
    serial = work / "console.log"
    serial.touch()
    template = render_template(dict(
        base=f"{WORK_MNT}/stage1/base.img", kernel=f"{WORK_MNT}/stage1/vmlinuz", initrd=f"{WORK_MNT}/stage1/initrd.img",
        append=f"root=PARTUUID={partuuid} rw console=ttyS0 net.ifnames=0", output=f"{WORK_MNT}/packer/out",
        size_mib=cfg.image.size_mib, accel=accel, memory_mib=cfg.image.memory_mib, serial=f"{WORK_MNT}/packer/console.log",
        files=f"{WORK_MNT}/packer/files", script=f"{GUEST_MNT}/provision.sh", password=password,
    ))
    (work / "template.json").write_text(json.dumps(template, indent=2))
    watch = _Watchdog(serial, cfg.image.stall_timeout)
    show = _phase_printer("image:packer")

    def on_line(line: str) -> None:
        watch.progress()
        show(line)

    spec = RunSpec(
        tools.ref, ["packer", "build", "-color=false", f"{WORK_MNT}/packer/template.json"], step="image-packer",
        mounts=[Mount(GUEST, GUEST_MNT), Mount(tmp, WORK_MNT, read_only=False)],
        environment={"PACKER_CACHE_DIR": f"{WORK_MNT}/packer/cache", "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"},
        workdir=f"{WORK_MNT}/packer", kvm=accel == "kvm",
    )
    try:
        engine.run(spec, phase="image:packer", on_line=on_line, watchdog=watch.check)
    except BaseException:
        tail = watch.console_tail()
        if tail:
            log.info("last lines of the guest's console:\n" + "\n".join(f"    {ln}" for ln in tail))
        raise
    os.replace(work / "out" / DISK, tmp / DISK)
    os.replace(serial, tmp / "provision-console.log")
    template["builders"][0]["ssh_password"] = "<redacted: random, used once; root is locked>"
    (tmp / "packer-template.json").write_text(json.dumps(template, indent=2))
    shutil.rmtree(work)
    (tmp / "stage1" / "base.img").unlink()


class _Watchdog:
    """Progress is new console output or a new Packer line; none for `limit`
    seconds means the guest is stuck (a KVM that cannot run it, a hung boot)."""

    def __init__(self, console: Path, limit: int) -> None:
        self.console, self.limit = console, limit
        self.last, self.size = time.monotonic(), 0

    def progress(self) -> None:
        self.last = time.monotonic()

    def check(self) -> Optional[str]:
        size = self.console.stat().st_size if self.console.exists() else 0
        if size != self.size:
            self.size = size
            self.progress()
        idle = time.monotonic() - self.last
        if idle < self.limit:
            return None
        last = (self.console_tail() or ["(the console is empty)"])[-1]
        return f"no console output or Packer progress for {int(idle)}s (last console line: {last!r})"

    def console_tail(self, n: int = 15) -> list[str]:
        try:
            text = self.console.read_bytes()[-8192:].decode("utf-8", "replace")
        except OSError:
            return []
        lines = [ln.rstrip("\r") for ln in text.replace("\x1b", "").splitlines() if ln.strip()]
        return lines[-n:]


# ---------------------------------------------------------------- the check


def expected_facts(m5_sha256: str, fs_uuid: Optional[str] = None, disk_id: Optional[str] = None) -> dict[str, str]:
    facts = {
        "PART1_TYPE": "83",
        "SHA /sbin/m5": m5_sha256,
        "SHA /root/hack_back_ckpt.rcS": HashCache.quick_sha256(GUEST / "hack_back_ckpt.rcS"),
        f"SHA {FASTINIT}": HashCache.quick_sha256(GUEST / "fastinit"),
        f"SHA {AUTOLOGIN_PATH}": HashCache.quick_sha256(GUEST / "autologin.conf"),
        "BASHRC_RUNS_RCS": "yes",
    }
    if fs_uuid:
        facts["FS_UUID"] = fs_uuid
    if disk_id:
        facts["DISK_ID"] = f"0x{disk_id}"
    return facts


def check(engine: Engine, tools: ToolsImage, disk: Path, expect: dict[str, str]) -> list[str]:
    """Problems found in `disk` without mounting it; [] when it is as expected."""
    lines: list[str] = []
    spec = RunSpec(tools.ref, ["bash", f"{GUEST_MNT}/check.sh", f"/disk/{disk.name}"], step="image-check",
                   mounts=[Mount(GUEST, GUEST_MNT), Mount(disk.parent, "/disk")], kvm=False)
    engine.run(spec, on_line=lines.append)
    facts: dict[str, str] = {}
    for line in lines:
        if line.startswith("SHA "):
            _, path, value = line.split(" ", 2)
            facts[f"SHA {path}"] = value
        elif " " in line:
            key, value = line.split(" ", 1)
            facts[key] = value
    problems = []
    if "ERROR" in facts:
        problems.append(facts["ERROR"])
    problems += _size_problems(facts)
    features = facts.get("FS_FEATURES", "").split()
    if not {"extent", "flex_bg", "has_journal"} <= set(features):
        problems.append(f"partition 1 is not ext4 (features: {' '.join(features) or 'none'})")
    for key, want in expect.items():
        got = facts.get(key, "missing")
        if got != want:
            problems.append(f"{key}: expected {want}, found {got}")
    for p in problems:
        log.info(f"check: {p}")
    if not problems:
        log.info(f"check: {disk} is a hack-back image (ext4 root, m5, rcS from .bashrc, serial autologin)")
    return problems


def _size_problems(facts: dict[str, str]) -> list[str]:
    """A partition shorter than its filesystem, or a disk file shorter than its partition
    (a truncated copy): both look fine until the guest touches the blocks past the end."""
    def size(key: str) -> Optional[int]:
        value = facts.get(key, "")
        return int(value) if value.isdigit() else None

    part, end, disk, fs = (size(k) for k in ("PART1_BYTES", "PART1_END_BYTES", "DISK_BYTES", "FS_BYTES"))
    problems = []
    if part is not None and fs is not None and fs > part:
        problems.append(f"partition 1 is {part} bytes, shorter than its ext4 filesystem ({fs} bytes)")
    if end is not None and disk is not None and disk < end:
        problems.append(f"the disk is {disk} bytes, but partition 1 ends at byte {end} (a truncated copy?)")
    return problems


def check_existing(cfg: Config, path: Optional[Path], m5: Optional[Path], engine: Optional[Engine] = None) -> None:
    """`invoke image --check [PATH]`: the built image by default."""
    engine = engine or Engine.connect()
    layout = Layout(cfg.work_dir)
    hashes = HashCache(layout.hash_db)
    directory = layout.artifact_dir("images", cfg.name)
    disk = path or directory / DISK
    if not disk.is_file():
        raise UsageError(f"no image at {disk}", "build one with `invoke image`, or name one: --check PATH")
    manifest = Manifest.read(disk.parent)
    if m5 is not None:
        m5_sha = hashes.sha256(m5)
    elif manifest and "image" in manifest.parts:
        m5_sha = manifest.parts["image"]["inputs"]["m5_sha256"]
    else:
        raise UsageError(f"{disk} has no manifest beside it to say which m5 it should hold", "give the m5 with --m5 PATH")
    tools = ensure_tools(cfg, engine, layout)
    problems = check(engine, tools, disk, expected_facts(m5_sha))
    if problems:
        raise ArtifactError(f"{disk} failed the check: {problems[0]}", f"{len(problems)} problem(s) in all; rebuild with `invoke image --force`")
