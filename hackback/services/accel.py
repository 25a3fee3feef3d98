"""Which accelerator QEMU can really use here.

/dev/kvm existing is not enough: on some hosts (nested microVMs) it opens and
QEMU accepts accel=kvm, but a stock guest never runs. So boot a kernel for a
few seconds under KVM and look for its first console line. The answer is
remembered per host boot and QEMU version.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from ..base import log
from ..store.hashes import digest_of
from ..store.layout import Layout
from ..store.manifest import write_atomically
from ..base.engine import UNTIL_MET, Engine, Mount, RunSpec, kvm_usable_on_host
from ..base.errors import UsageError

Accel = Literal["kvm", "tcg"]
PROBE_SECONDS = 20


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def kvm_runs_guests(engine: Engine, layout: Layout, tools_ref: str, qemu_version: str, kernel: Path) -> tuple[bool, str]:
    """(works, why). Boots `kernel` under accel=kvm for up to PROBE_SECONDS."""
    if not kvm_usable_on_host():
        return False, "no usable /dev/kvm on this host"
    cache = layout.cache_dir("kvm-probe.json")
    key = digest_of({"boot": _boot_id(), "qemu": qemu_version})
    try:
        known = json.loads(cache.read_text())
        if known.get("key") == key:
            return bool(known["works"]), str(known["why"])
    except (OSError, ValueError, KeyError):
        pass
    seen: list[str] = []
    cmd = [
        "timeout", str(PROBE_SECONDS), "qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", "/probe/vmlinuz", "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1",
    ]
    spec = RunSpec(tools_ref, cmd, step="kvm-probe", mounts=[Mount(kernel.parent, "/probe")], kvm=True)
    log.info(f"checking whether KVM can run a guest here (up to {PROBE_SECONDS}s)")
    status = engine.run(spec, on_line=seen.append, check=False, until=lambda line: "Linux version" in line)
    works = status == UNTIL_MET
    errors = [ln for ln in seen if "KVM internal error" in ln or "emulation failure" in ln or "Could not access KVM" in ln]
    why = "a kernel booted under KVM" if works else (errors[0] if errors else f"a kernel printed nothing in {PROBE_SECONDS}s under KVM")
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(cache, json.dumps({"key": key, "works": works, "why": why}))
    return works, why


def choose(wanted: str, engine: Engine, layout: Layout, tools_ref: str, qemu_version: str, kernel: Path) -> Accel:
    if wanted == "tcg":
        return "tcg"
    if wanted == "kvm":
        if not kvm_usable_on_host():
            raise UsageError("--accel kvm, but /dev/kvm is missing or not accessible here", "use --accel tcg or auto")
        works, why = kvm_runs_guests(engine, layout, tools_ref, qemu_version, kernel)
        if not works:
            raise UsageError(f"--accel kvm, but KVM cannot run a guest here ({why})", "use --accel tcg or auto")
        return "kvm"
    works, why = kvm_runs_guests(engine, layout, tools_ref, qemu_version, kernel)
    if works:
        log.info("accelerator: KVM (a test guest booted under it)")
        return "kvm"
    log.info(f"accelerator: TCG, because KVM cannot run a guest here: {why}")
    return "tcg"
