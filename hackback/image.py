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
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import accel as _accel
from . import elf, log
from .artifacts import HashCache, Layout, Manifest, Target, build_unless_fresh, digest_of, file_record, require_free
from .config import Config
from .context import StepContext
from .engine import Engine, Mount, RunSpec
from .errors import ArtifactError, UsageError
from .records import DISK, FASTINIT, ImageArtifact, ToolsImage

GUEST = Path(__file__).resolve().parent / "guest"
GUEST_FILES = ("stage1.sh", "provision.sh", "hack_back_ckpt.rcS", "hackback-guest.c", "autologin.conf", "bashrc-hook.sh",
               "check.sh", "fastinit")
GUEST_HELPER = "hackback-guest"  # built from hackback-guest.c in stage 1, at /sbin/hackback-guest
WORK_MNT = "/hackback/work"
GUEST_MNT = "/hackback/guest"
AUTOLOGIN_PATH = "/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"


def inputs(cfg: Config, tools: ToolsImage, m5_sha256: str) -> dict[str, Any]:
    img = cfg.image
    return {
        "tools_image": tools.id,
        "guest_files": {name: HashCache.sha256_uncached(GUEST / name) for name in GUEST_FILES},
        "template": digest_of(render_template(_PLACEHOLDERS)),
        "distribution": img.distribution,
        "suite": img.suite,
        "mirror": img.mirror,
        "packages": list(img.packages),
        "size_mib": img.size_mib,
        "m5_sha256": m5_sha256,
    }


def ensure(ctx: StepContext, m5: Path, force: bool = False) -> ImageArtifact:
    cfg = ctx.cfg
    problem = elf.static_x86_64_problem(m5)  # before anything is touched: it goes into the image as it is
    if problem:
        raise UsageError(f"m5 binary {m5} {problem}", "build it with `invoke env`, or give a static x86-64 m5 with --m5 PATH")
    want = inputs(cfg, ctx.tools, ctx.hashes.sha256(m5))

    def build(tmp: Path, manifest: Manifest) -> None:
        require_free(ctx.layout.work_dir, 2 * cfg.image.size_mib * 2**20 + (2 << 30), "building the disk image")
        _build(_Build(cfg, ctx.engine, ctx.layout, ctx.hashes, ctx.tools, m5, want, tmp), manifest)

    done = build_unless_fresh(ctx.layout, Target("images", cfg.name, "image", f"image '{cfg.name}'"), want, force, build)
    return ImageArtifact.of(cfg.name, done.directory, done.manifest)


@dataclass(frozen=True)
class _Build:
    """What one image build needs, handed from stage to stage."""
    cfg: Config
    engine: Engine
    layout: Layout
    hashes: HashCache
    tools: ToolsImage
    m5: Path
    want: dict[str, Any]
    tmp: Path
    password: str = field(default_factory=lambda: secrets.token_hex(12))  # for Packer's SSH only: provisioning locks root

    @property
    def seed(self) -> str:
        return digest_of(self.want)  # same inputs, same identifiers

    @property
    def fs_uuid(self) -> str:
        return str(uuid.UUID(self.seed[:32]))

    @property
    def disk_id(self) -> str:
        return self.seed[32:40]

    @property
    def partuuid(self) -> str:
        return f"{self.disk_id}-01"

    @property
    def stage1(self) -> Path:
        return self.tmp / "stage1"


def _build(b: _Build, manifest: Manifest) -> None:
    img = b.cfg.image
    times: dict[str, float] = {}
    start = time.monotonic()
    with log.step(f"image stage 1: {img.suite} from {img.mirror} into a raw disk"):
        _stage1(b)
    times["stage1_seconds"] = time.monotonic() - start

    start = time.monotonic()
    accel = _accel.choose(img.accel, b.engine, b.layout, b.tools.ref, b.tools.versions.get("qemu", ""), b.stage1 / "vmlinuz")
    with log.step(f"image stage 2: Packer + QEMU ({accel}) provisioning"):
        _provision(b, accel)
    times["stage2_seconds"] = time.monotonic() - start
    _finish(b, manifest, accel, times)


def _stage1(b: _Build) -> None:
    img = b.cfg.image
    b.stage1.mkdir()
    spec = RunSpec(
        b.tools.ref, ["bash", f"{GUEST_MNT}/stage1.sh"], step="image-stage1",
        mounts=[Mount(GUEST, GUEST_MNT), Mount(b.stage1, "/out", read_only=False)],
        environment={
            "SUITE": img.suite, "MIRROR": img.mirror, "PACKAGES": " ".join(img.packages),
            "SIZE_MIB": str(img.size_mib), "FS_UUID": b.fs_uuid, "DISK_ID": b.disk_id,
            "ROOT_PASSWORD": b.password, "RNG_SEED": b.seed[:64], "OWNER": f"{os.getuid()}:{os.getgid()}",
        },
        as_root=True, cap_add=["SYS_ADMIN"], kvm=False,
    )
    b.engine.run(spec, phase="image:stage1", on_line=_phase_printer("image:stage1"))


def _finish(b: _Build, manifest: Manifest, accel: str, times: dict[str, float]) -> None:
    """Keep stage 1's kernel, initrd and helper beside the disk, check the disk, record it."""
    tmp, hashes = b.tmp, b.hashes
    for name in ("vmlinuz", "initrd.img", "packages.tsv", GUEST_HELPER):
        os.replace(b.stage1 / name, tmp / name)
    shutil.rmtree(b.stage1)
    expect = expected_facts(hashes.sha256(b.m5), b.fs_uuid, b.disk_id, hashes.sha256(tmp / GUEST_HELPER))
    problems = check(b.engine, b.tools, tmp / DISK, expect)
    if problems:
        raise ArtifactError(f"the built image failed its check: {problems[0]}", f"{len(problems)} problem(s); see the lines above")
    st = (tmp / DISK).stat()
    manifest.set_part(
        "image",
        b.want,
        {name: file_record(tmp / name, hashes) for name in (DISK, "vmlinuz", "initrd.img", GUEST_HELPER)},
        {
            "partuuid": b.partuuid,
            "fs_uuid": b.fs_uuid,
            "root_kernel_arg": f"root=PARTUUID={b.partuuid}",
            "virtual_bytes": st.st_size,
            "allocated_bytes": st.st_blocks * 512,
            "accelerator": accel,
            "tools_image": b.tools.ref,
            "tools": b.tools.versions,
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


TEMPLATE = "packer-template.json"  # in GUEST; its rendering (not the file) is the "template" input
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render_template(p: dict[str, Any]) -> dict[str, Any]:
    """Packer 1.6.6 JSON template (qemu builder) for provisioning an existing raw disk,
    from GUEST/packer-template.json with its {{name}} placeholders filled from `p`."""
    data = json.loads((GUEST / TEMPLATE).read_text())
    # Root keys starting with "_" are notes (Packer ignores them too); dropped so they are no input.
    body = {key: value for key, value in data.items() if not key.startswith("_")}
    filled: dict[str, Any] = _fill(body, dict(p, vm_name=DISK))
    return filled


def _fill(node: Any, values: dict[str, Any]) -> Any:
    """A whole-string placeholder takes the value as it is, so numbers and booleans keep
    their type; one inside other text is interpolated. An unknown name raises KeyError."""
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    if not isinstance(node, str):
        return node
    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return values[whole.group(1)]
    return _PLACEHOLDER.sub(lambda m: f"{values[m.group(1)]}", node)


def _provision(b: _Build, accel: str) -> None:
    work = b.tmp / "packer"
    files = work / "files"
    files.mkdir(parents=True)
    shutil.copy2(b.m5, files / "m5")
    for name in ("hack_back_ckpt.rcS", "autologin.conf", "bashrc-hook.sh", "fastinit"):
        shutil.copy2(GUEST / name, files / name)
    serial = work / "console.log"
    serial.touch()
    template = render_template(dict(
        base=f"{WORK_MNT}/stage1/base.img", kernel=f"{WORK_MNT}/stage1/vmlinuz", initrd=f"{WORK_MNT}/stage1/initrd.img",
        append=f"root=PARTUUID={b.partuuid} rw console=ttyS0 net.ifnames=0", output=f"{WORK_MNT}/packer/out",
        size_mib=b.cfg.image.size_mib, accel=accel, memory_mib=b.cfg.image.memory_mib,
        serial=f"{WORK_MNT}/packer/console.log", files=f"{WORK_MNT}/packer/files", script=f"{GUEST_MNT}/provision.sh",
        password=b.password,
    ))
    (work / "template.json").write_text(json.dumps(template, indent=2))
    _run_packer(b, accel, serial)
    os.replace(work / "out" / DISK, b.tmp / DISK)
    os.replace(serial, b.tmp / "provision-console.log")
    template["builders"][0]["ssh_password"] = "<redacted: random, used once; root is locked>"
    (b.tmp / "packer-template.json").write_text(json.dumps(template, indent=2))
    shutil.rmtree(work)
    (b.stage1 / "base.img").unlink()


def _run_packer(b: _Build, accel: str, serial: Path) -> None:
    """`packer build` under the watchdog; a failure shows the guest console's tail first."""
    watch = _Watchdog(serial, b.cfg.image.stall_timeout)
    show = _phase_printer("image:packer")

    def on_line(line: str) -> None:
        watch.progress()
        show(line)

    spec = RunSpec(
        b.tools.ref, ["packer", "build", "-color=false", f"{WORK_MNT}/packer/template.json"], step="image-packer",
        mounts=[Mount(GUEST, GUEST_MNT), Mount(b.tmp, WORK_MNT, read_only=False)],
        environment={"PACKER_CACHE_DIR": f"{WORK_MNT}/packer/cache", "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"},
        workdir=f"{WORK_MNT}/packer", kvm=accel == "kvm",
    )
    try:
        b.engine.run(spec, phase="image:packer", on_line=on_line, watchdog=watch.check)
    except BaseException:
        tail = watch.console_tail()
        if tail:
            log.info("last lines of the guest's console:\n" + "\n".join(f"    {ln}" for ln in tail))
        raise


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


def expected_facts(m5_sha256: str, fs_uuid: Optional[str] = None, disk_id: Optional[str] = None,
                   helper_sha256: Optional[str] = None) -> dict[str, str]:
    facts = {
        "PART1_TYPE": "83",
        "SHA /sbin/m5": m5_sha256,
        "SHA /root/hack_back_ckpt.rcS": HashCache.sha256_uncached(GUEST / "hack_back_ckpt.rcS"),
        f"SHA {FASTINIT}": HashCache.sha256_uncached(GUEST / "fastinit"),
        f"SHA {AUTOLOGIN_PATH}": HashCache.sha256_uncached(GUEST / "autologin.conf"),
        "BASHRC_RUNS_RCS": "yes",
    }
    if helper_sha256:
        facts[f"SHA /sbin/{GUEST_HELPER}"] = helper_sha256
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


def check_existing(ctx: StepContext, path: Optional[Path], m5: Optional[Path]) -> None:
    """`invoke image --check [PATH]`: the built image by default."""
    hashes = ctx.hashes
    directory = ctx.layout.artifact_dir("images", ctx.cfg.name)
    disk = path or directory / DISK
    if not disk.is_file():
        raise UsageError(f"no image at {disk}", "build one with `invoke image`, or name one: --check PATH")
    manifest = Manifest.read(disk.parent)
    helper_sha = None
    if manifest and "image" in manifest.parts:
        helper_sha = manifest.parts["image"]["outputs"].get(GUEST_HELPER, {}).get("sha256")
    if m5 is not None:
        m5_sha = hashes.sha256(m5)
    elif manifest and "image" in manifest.parts:
        m5_sha = manifest.parts["image"]["inputs"]["m5_sha256"]
    else:
        raise UsageError(f"{disk} has no manifest beside it to say which m5 it should hold", "give the m5 with --m5 PATH")
    problems = check(ctx.engine, ctx.tools, disk, expected_facts(m5_sha, helper_sha256=helper_sha))
    if problems:
        raise ArtifactError(f"{disk} failed the check: {problems[0]}", f"{len(problems)} problem(s) in all; rebuild with `invoke image --force`")
