"""`hackback image`: the hack-back disk image, in two stages inside the tools image.

1. Base system: debootstrap from the configured mirror, ext4 built straight from
   the tree (mke2fs -d) and laid into a raw disk with sfdisk + dd (sparse, no loop
   devices). Runs as root with CAP_SYS_ADMIN only (debootstrap's chroot mounts).
2. Provisioning: Packer's qemu builder boots that disk with its own kernel and
   initrd and installs m5, the serial autologin and the rcS over SSH.
A watchdog fails a guest that stops making progress within image.stall_timeout,
with its console's tail. Every build ends with a static check of the result.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..services import accel as _accel
from ..base import elf, log, resources
from ..store.build import Target, build_unless_fresh
from ..store.hashes import HashCache, digest_of, file_record
from ..store.layout import Layout, require_free
from ..store.manifest import Manifest
from ..base.config import Config
from ..protocol.context import StepContext
from ..protocol.step import Request, Step
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError, UsageError
from ..store.records import DISK, FASTINIT, BaseInfo, ImageArtifact, ToolsImage

GUEST = resources.package_file("guest")
GUEST_FILES = ("stage1.sh", "provision.sh", "hack_back_ckpt.rcS", "hackback-guest.c", "autologin.conf", "bashrc-hook.sh",
               "check.sh", "fastinit")  # the base's; lockdown.sh is the finished image's
GUEST_HELPER = "hackback-guest"  # built from hackback-guest.c in stage 1, at /sbin/hackback-guest
LOCKDOWN = "lockdown.sh"  # the last provisioning step, after the user layer
BASE_DISK = "base.img"  # the provisionable base, kept beside the finished disk
BASE_MNT = "/hackback/base"
WORK_MNT = "/hackback/work"
GUEST_MNT = "/hackback/guest"
AUTOLOGIN_PATH = "/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"


def inputs(cfg: Config, tools: ToolsImage, m5_sha256: str) -> dict[str, Any]:
    """What the base (stage 1 and hackback's own provisioning) is made from."""
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


def layer_inputs(cfg: Config, base: Manifest, hashes: HashCache) -> dict[str, Any]:
    """What the finished image is made from: the base as built, the user layer
    (each script's and file's sha256), and the lock-down."""
    img = cfg.image
    return {
        "base": base.identity("base"),
        "lockdown_sha256": HashCache.sha256_uncached(GUEST / LOCKDOWN),
        "template": digest_of(render_template(_PLACEHOLDERS)),
        "user_packages": list(img.user_packages),
        "user_files": {guest: {"host": str(host), "sha256": hashes.tree_sha256(host) if host.is_dir() else hashes.sha256(host)}
                       for guest, host in sorted(img.user_files.items())},
        "user_scripts": [{"path": str(p), "sha256": hashes.sha256(p)} for p in img.user_scripts],
    }


def ensure(ctx: StepContext, m5: Path, force: bool = False) -> ImageArtifact:
    """The base (built only when its inputs change), then the finished image: the
    user layer and the lock-down on a copy of the base."""
    cfg = ctx.cfg
    problem = elf.static_x86_64_problem(m5)  # before anything is touched: it goes into the image as it is
    if problem:
        raise UsageError(f"m5 binary {m5} {problem}", "build it with `hackback env`, or give a static x86-64 m5 with --m5 PATH")
    base_want = inputs(cfg, ctx.tools, ctx.hashes.sha256(m5))

    def build_base(tmp: Path, manifest: Manifest) -> None:
        require_free(ctx.layout.work_dir, 2 * cfg.image.size_mib * 2**20 + (2 << 30), "building the disk image")
        _build_base(_Build(cfg, ctx.engine, ctx.layout, ctx.hashes, ctx.tools, m5, base_want, tmp), manifest)

    base = build_unless_fresh(ctx.layout, Target("images", cfg.name, "base", f"image '{cfg.name}' base", shared=True),
                              base_want, force, build_base)
    want = layer_inputs(cfg, base.manifest, ctx.hashes)

    def build_layer(tmp: Path, manifest: Manifest) -> None:
        require_free(ctx.layout.work_dir, cfg.image.size_mib * 2**20 + (1 << 30), "building the disk image")
        _build_layer(_Build(cfg, ctx.engine, ctx.layout, ctx.hashes, ctx.tools, m5, want, tmp), base.manifest, manifest)

    done = build_unless_fresh(ctx.layout, Target("images", cfg.name, "image", f"image '{cfg.name}'", shared=True),
                              want, force, build_layer)
    if not base.built and not done.built:
        log.info(f"image '{cfg.name}' is up to date ({done.directory})")
    return ImageArtifact.of(cfg.name, done.directory, done.manifest)


def _password(seed: str) -> str:
    """Root's password for Packer's SSH while the image is provisioned (base and
    layer): derived from the base's inputs, so the layer can log in again; the
    lock-down locks root, and the VM is reachable only from its container."""
    return digest_of(["packer-ssh", seed])[:24]


@dataclass(frozen=True)
class _Build:
    """What one image build (base or layer) needs, handed from stage to stage."""
    cfg: Config
    engine: Engine
    layout: Layout
    hashes: HashCache
    tools: ToolsImage
    m5: Path
    want: dict[str, Any]
    tmp: Path

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


def _build_base(b: _Build, manifest: Manifest) -> None:
    img = b.cfg.image
    times: dict[str, float] = {}
    start = time.monotonic()
    with log.step(f"image stage 1: {img.suite} from {img.mirror} into a raw disk"):
        _stage1(b)
    times["stage1_seconds"] = time.monotonic() - start
    start = time.monotonic()
    accel = _accel.choose(img.accel, b.engine, b.layout, b.tools.ref, b.tools.versions.get("qemu", ""), b.stage1 / "vmlinuz")
    with log.step(f"image stage 2: Packer + QEMU ({accel}) provisioning the base"):
        files = b.tmp / "packer" / "files"
        files.mkdir(parents=True)
        shutil.copy2(b.m5, files / "m5")
        for name in ("hack_back_ckpt.rcS", "autologin.conf", "bashrc-hook.sh", "fastinit"):
            shutil.copy2(GUEST / name, files / name)
        provisioners: list[dict[str, Any]] = [{"type": "shell", "inline": ["mkdir -p /tmp/hackback"]},
                        {"type": "file", "source": f"{WORK_MNT}/packer/files/", "destination": "/tmp/hackback/"},
                        {"type": "shell", "script": f"{GUEST_MNT}/provision.sh"}]
        boot = _Boot(f"{WORK_MNT}/stage1/base.img", f"{WORK_MNT}/stage1/vmlinuz", f"{WORK_MNT}/stage1/initrd.img",
                     b.partuuid, _password(b.seed))
        _provision(b, accel, boot, provisioners, BASE_DISK, "base-")
    times["stage2_seconds"] = time.monotonic() - start
    for name in ("vmlinuz", "initrd.img", "packages.tsv", GUEST_HELPER):
        os.replace(b.stage1 / name, b.tmp / name)
    shutil.rmtree(b.stage1)
    manifest.set_part("base", b.want, {name: file_record(b.tmp / name, b.hashes) for name in (BASE_DISK, "vmlinuz", "initrd.img", GUEST_HELPER)}, {
        "partuuid": b.partuuid, "fs_uuid": b.fs_uuid, "disk_id": b.disk_id, "accelerator": accel,
        "tools_image": b.tools.ref, "tools": b.tools.versions, "packages": _read_packages(b.tmp / "packages.tsv"),
        **{k: round(v, 1) for k, v in times.items()},
    })


def _stage1(b: _Build) -> None:
    img = b.cfg.image
    b.stage1.mkdir()
    spec = RunSpec(
        b.tools.ref, ["bash", f"{GUEST_MNT}/stage1.sh"], step="image-stage1",
        mounts=[Mount(GUEST, GUEST_MNT), Mount(b.stage1, "/out", read_only=False)],
        environment={
            "SUITE": img.suite, "MIRROR": img.mirror, "PACKAGES": " ".join(img.packages),
            "SIZE_MIB": str(img.size_mib), "FS_UUID": b.fs_uuid, "DISK_ID": b.disk_id,
            "ROOT_PASSWORD": _password(b.seed), "RNG_SEED": b.seed[:64], "OWNER": f"{os.getuid()}:{os.getgid()}",
        },
        as_root=True, cap_add=["SYS_ADMIN"], kvm=False,
    )
    b.engine.run(spec, phase="image:stage1", on_line=_phase_printer("image:stage1"))


def _build_layer(b: _Build, base_manifest: Manifest, manifest: Manifest) -> None:
    """The user layer and the lock-down, provisioned on a copy of the base (Packer
    reads the base read-only and writes a new disk); then the check."""
    info = BaseInfo.of(base_manifest)
    start = time.monotonic()
    accel = info.accelerator
    layer = _user_provisioners(b)
    what = f"the user layer ({_describe_layer(b.cfg)}) and the lock-down" if layer else "the lock-down"
    with log.step(f"image stage 3: Packer + QEMU ({accel}) provisioning {what} on a copy of the base"):
        provisioners: list[dict[str, Any]] = [{"type": "shell", "inline": ["mkdir -p /tmp/hackback"]}, *layer,
                        {"type": "shell", "script": f"{GUEST_MNT}/{LOCKDOWN}"}]
        base_dir = b.layout.artifact_dir("images", b.cfg.name)
        boot = _Boot(f"{BASE_MNT}/{BASE_DISK}", f"{BASE_MNT}/vmlinuz", f"{BASE_MNT}/initrd.img", info.partuuid,
                     _password(base_manifest.inputs_digest("base")), (Mount(base_dir, BASE_MNT),))
        _provision(b, accel, boot, provisioners, DISK, "")
    seconds = time.monotonic() - start
    expect = expected_facts(str(base_manifest.inputs_of("base")["m5_sha256"]), info.fs_uuid, info.disk_id,
                            str(base_manifest.output_sha256("base", GUEST_HELPER)))
    problems = check(b.engine, b.tools, b.tmp / DISK, expect)
    if problems:
        raise ArtifactError(f"the built image failed its check: {problems[0]}", f"{len(problems)} problem(s); see the lines above")
    st = (b.tmp / DISK).stat()
    manifest.set_part("image", b.want, {DISK: file_record(b.tmp / DISK, b.hashes)}, {
        "partuuid": info.partuuid, "fs_uuid": info.fs_uuid, "root_kernel_arg": f"root=PARTUUID={info.partuuid}",
        "virtual_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512, "accelerator": accel,
        "tools_image": b.tools.ref, "tools": b.tools.versions, "packages": dict(info.packages),
        "user_layer": {k: b.want[k] for k in ("user_packages", "user_files", "user_scripts")},
        "layer_seconds": round(seconds, 1),
    })
    log.info(f"image: {st.st_size / 2**30:.1f} GiB virtual, {st.st_blocks * 512 / 2**30:.2f} GiB allocated; "
             f"layer and lock-down {log.format_seconds(seconds)}")


def _describe_layer(cfg: Config) -> str:
    img = cfg.image
    return ", ".join(f"{len(v)} {k}" for k, v in (("package(s)", img.user_packages), ("file(s)", img.user_files),
                                                  ("script(s)", img.user_scripts)) if v)


def _user_provisioners(b: _Build) -> list[dict[str, Any]]:
    """Packer provisioners for the user layer: packages, then files, then scripts,
    with the files and scripts copied into the Packer work directory."""
    img = b.cfg.image
    out: list[dict[str, Any]] = []
    if img.user_packages:
        pkgs = " ".join(shlex.quote(p) for p in img.user_packages)
        out.append({"type": "shell", "inline": [
            "echo 'HACKBACK-STEP user packages: " + " ".join(img.user_packages).replace("'", "") + "'",
            f"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {pkgs}"]})
    user = b.tmp / "packer" / "user"
    for i, (guest, host) in enumerate(sorted(img.user_files.items())):
        dest = user / str(i)
        dest.mkdir(parents=True)
        parent = guest if host.is_dir() else str(Path(guest).parent)
        if host.is_dir():
            shutil.copytree(host, dest / host.name, symlinks=True)
        else:
            shutil.copy2(host, dest / host.name)
        out.append({"type": "shell", "inline": [f"echo 'HACKBACK-STEP user file {guest}'", f"mkdir -p {shlex.quote(parent)}"]})
        out.append({"type": "file", "source": f"{WORK_MNT}/packer/user/{i}/{host.name}" + ("/" if host.is_dir() else ""),
                    "destination": guest})
    scripts = b.tmp / "packer" / "scripts"
    for i, script in enumerate(img.user_scripts):
        scripts.mkdir(parents=True, exist_ok=True)
        shutil.copy2(script, scripts / f"{i:02d}-{script.name}")
        out.append({"type": "shell", "inline": [f"echo 'HACKBACK-STEP user script {script.name}'"]})
        out.append({"type": "shell", "script": f"{WORK_MNT}/packer/scripts/{i:02d}-{script.name}"})
    return out


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
    accel="tcg", memory_mib=0, serial="SERIAL", password="PW", provisioners="PROVISIONERS",
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


@dataclass(frozen=True)
class _Boot:
    """What Packer boots: a disk (container path), its kernel and initrd, its root
    partition, root's password."""
    disk: str
    kernel: str
    initrd: str
    partuuid: str
    password: str
    mounts: tuple[Mount, ...] = ()  # what it boots from, when that is not in the work dir


def _provision(b: _Build, accel: str, boot: _Boot, provisioners: list[dict[str, Any]], out_name: str, keep_as: str) -> None:
    """One Packer run: boot `boot.disk`, run the provisioners, write tmp/out_name;
    the console log and template kept as <keep_as>provision-console.log, ...template.json."""
    work = b.tmp / "packer"
    work.mkdir(exist_ok=True)
    serial = work / "console.log"
    serial.touch()
    template = render_template(dict(
        base=boot.disk, kernel=boot.kernel, initrd=boot.initrd,
        append=f"root=PARTUUID={boot.partuuid} rw console=ttyS0 net.ifnames=0",
        output=f"{WORK_MNT}/packer/out", size_mib=b.cfg.image.size_mib, accel=accel, memory_mib=b.cfg.image.memory_mib,
        serial=f"{WORK_MNT}/packer/console.log", password=boot.password, provisioners=provisioners,
    ))
    (work / "template.json").write_text(json.dumps(template, indent=2))
    _run_packer(b, accel, serial, boot.mounts)
    os.replace(work / "out" / DISK, b.tmp / out_name)
    os.replace(serial, b.tmp / f"{keep_as}provision-console.log")
    template["builders"][0]["ssh_password"] = "<redacted: used while provisioning only; root is locked>"
    (b.tmp / f"{keep_as}packer-template.json").write_text(json.dumps(template, indent=2))
    shutil.rmtree(work)
    if (b.stage1 / BASE_DISK).exists():
        (b.stage1 / BASE_DISK).unlink()


def _run_packer(b: _Build, accel: str, serial: Path, mounts: tuple[Mount, ...] = ()) -> None:
    """`packer build` under the watchdog; a failure shows the guest console's tail first."""
    watch = _Watchdog(serial, b.cfg.image.stall_timeout)
    show = _phase_printer("image:packer")

    recent: collections.deque[str] = collections.deque(maxlen=12)

    def on_line(line: str) -> None:
        watch.progress()
        recent.append(line)
        show(line)

    spec = RunSpec(
        b.tools.ref, ["packer", "build", "-color=false", f"{WORK_MNT}/packer/template.json"], step="image-packer",
        mounts=[Mount(GUEST, GUEST_MNT), Mount(b.tmp, WORK_MNT, read_only=False), *mounts],
        environment={"PACKER_CACHE_DIR": f"{WORK_MNT}/packer/cache", "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"},
        workdir=f"{WORK_MNT}/packer", kvm=accel == "kvm",
    )
    try:
        b.engine.run(spec, phase="image:packer", on_line=on_line, watchdog=watch.check)
    except BaseException:
        tail = watch.console_tail()
        if tail:
            log.info("last lines of the guest's console:\n" + "\n".join(f"    {ln}" for ln in tail))
        if recent:  # a failing provisioning script (a user script's, say) says why here
            log.info("last lines of the provisioning output:\n" + "\n".join(f"    {ln}" for ln in recent))
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
    """`hackback image --check [PATH]`: the built image by default."""
    hashes = ctx.hashes
    directory = ctx.layout.artifact_dir("images", ctx.cfg.name)
    disk = path or directory / DISK
    if not disk.is_file():
        raise UsageError(f"no image at {disk}", "build one with `hackback image`, or name one: --check PATH")
    manifest = Manifest.read(disk.parent)
    helper_sha = manifest.output_sha256("base", GUEST_HELPER) if manifest else None
    # An image made before the base/layer split recorded m5 in its one part.
    recorded = manifest and (manifest.inputs_of("base") or manifest.inputs_of("image")).get("m5_sha256")
    if m5 is not None:
        m5_sha = hashes.sha256(m5)
    elif recorded:
        m5_sha = str(recorded)
    else:
        raise UsageError(f"{disk} has no manifest beside it to say which m5 it should hold", "give the m5 with --m5 PATH")
    problems = check(ctx.engine, ctx.tools, disk, expected_facts(m5_sha, helper_sha256=helper_sha))
    if problems:
        raise ArtifactError(f"{disk} failed the check: {problems[0]}", f"{len(problems)} problem(s) in all; rebuild with `hackback image --force`")


# ---------------------------------------------------------------- the steps


class ImageStep(Step):
    name = "image"
    needs = ("m5",)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> ImageArtifact:
        return ensure(ctx, deps["m5"], force=req.forced(self.name))


class ImageCheckStep(Step):
    """`hackback image --check [PATH]`: checks a built image, builds nothing."""

    name = "image-check"
    builds = False

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> None:
        if ctx.layout.dry_run:
            log.info(f"plan: would check {req.check if isinstance(req.check, Path) else 'the built image'} in a container")
            return None
        return check_existing(ctx, req.check if isinstance(req.check, Path) else None, ctx.cfg.image.m5)


IMAGE = ImageStep()
IMAGE_CHECK = ImageCheckStep()
