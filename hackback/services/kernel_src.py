"""Where the kernel step's Linux comes from, resolved to a tree on disk once.

  debian:   a linux-source-X.Y package from the configured Debian mirror
            (apt in the tools image: signed indexes, so it works air-gapped
            through the mirror). The mirror keeps only its newest version, so the
            exact version and the .deb's sha256 are pinned in
            cache/kernel-src/<package>.json and reused until --force.
  tarball:  a kernel.org-style tarball, url + sha256 (download.fetch).
  prebuilt: a ready vmlinux, url + sha256; nothing to build.

Trees are extracted once under cache/kernel-src/ (staging dir, then rename)
and mounted read-only into the build: the build is out of tree (make O=).
"""
from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import download
from ..base import log
from ..store.build import new_tmp
from ..store.hashes import HashCache
from ..store.layout import Layout, make_dir, require_free
from ..store.manifest import write_atomically
from ..store.records import ToolsImage
from ..base.config import KernelConfig
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError, ConfigError, ContainerFailed, DiskSpaceError

DEB_BYTES = 256 << 20  # linux-source-6.1's .deb is ~140 MB
TREE_BYTES = 2 << 30  # its extracted tree ~1.6 GB; a kernel.org tarball's about the same
NO_SPACE = "No space left on device"  # strerror(ENOSPC), as apt and tar print it


@dataclass(frozen=True)
class KernelSource:
    kind: str
    tree: Optional[Path]  # None for prebuilt
    version: str  # package version, tarball name, or "prebuilt"
    sha256: str  # of the .deb, tarball or vmlinux
    origin: str  # where it came from, for the manifest
    vmlinux: Optional[Path] = None  # prebuilt only

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256, "origin": self.origin}


def spec_inputs(kc: KernelConfig) -> dict[str, Any]:
    """What the config says about the source: enough to decide a rebuild is
    needed without asking the mirror (the resolved version is info, recorded)."""
    if kc.source == "debian":
        return {"kind": "debian", "package": kc.package, "mirror": kc.mirror, "suite": kc.suite}
    return {"kind": kc.source, "url": kc.url, "sha256": kc.sha256.lower()}


def validate(kc: KernelConfig) -> None:
    if kc.source in ("tarball", "prebuilt") and not (kc.url and kc.sha256):
        raise ConfigError(
            f"kernel.source = '{kc.source}' needs kernel.url and kernel.sha256",
            "set both in hackback.toml (the sha256 the publisher lists), or use source = 'debian'",
        )


def resolve(kc: KernelConfig, engine: Engine, tools: ToolsImage, layout: Layout, hashes: HashCache,
            refresh: bool = False) -> KernelSource:
    validate(kc)
    root = layout.cache_dir("kernel-src")
    if layout.dry_run:
        return _known(kc, root) or _would_fetch(kc, layout)
    make_dir(root, "kernel sources (cache/kernel-src)")
    if kc.source == "debian":
        return _debian(kc, engine, tools, layout, root, hashes, refresh)
    name = urllib.parse.urlparse(kc.url).path.rsplit("/", 1)[-1] or "download"
    dest = root / "downloads" / f"{kc.sha256.lower()[:16]}-{name}"
    with log.step(f"kernel source: {kc.url}"):
        download.fetch(kc.url, dest, kc.sha256)  # checks the free space against the size the server gives
    if kc.source == "prebuilt":
        return KernelSource("prebuilt", None, "prebuilt", kc.sha256.lower(), kc.url, vmlinux=dest)
    tree = root / f"tarball-{kc.sha256.lower()[:16]}"
    if not (tree / "Makefile").is_file():
        _extract(engine, tools, layout, dest, tree, f"tar -xf /hb/in/{dest.name} -C /hb/out")
    return KernelSource("tarball", tree, name, kc.sha256.lower(), kc.url)


def _known(kc: KernelConfig, root: Path) -> Optional[KernelSource]:
    """The source a dry run can name without fetching anything: a pinned Debian tree already there."""
    pin = root / f"{kc.package}.json"
    pinned = json.loads(pin.read_text()) if kc.source == "debian" and pin.is_file() else None
    if pinned and pinned.get("mirror") == kc.mirror and pinned.get("suite") == kc.suite and (Path(pinned["tree"]) / "Makefile").is_file():
        return KernelSource("debian", Path(pinned["tree"]), pinned["version"], pinned["sha256"], pinned["origin"])
    return None


def _would_fetch(kc: KernelConfig, layout: Layout) -> KernelSource:
    what = f"{kc.package} from {kc.mirror} ({kc.suite})" if kc.source == "debian" else kc.url
    layout.would_build("the kernel source", f"{what} fetched and extracted into the work dir")
    raise AssertionError("unreachable: would_build raises in a dry run")


def _debian(kc: KernelConfig, engine: Engine, tools: ToolsImage, layout: Layout, root: Path, hashes: HashCache,
            refresh: bool) -> KernelSource:
    known = None if refresh else _known(kc, root)
    if known is not None:
        return known
    pin = root / f"{kc.package}.json"

    debs = root / "debs"
    make_dir(debs, "kernel source packages (cache/kernel-src/debs)")
    version = _apt_download(kc, engine, tools, debs)
    deb = debs / f"{kc.package}_{urllib.parse.quote(version, safe='+.~-')}_all.deb"
    if not deb.is_file():
        found = sorted(debs.glob(f"{kc.package}_*.deb"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ArtifactError(f"apt downloaded no {kc.package} package", "check the package name and the mirror")
        deb = found[-1]
    sha = hashes.sha256(deb)
    tree = root / f"{kc.package}-{version}"
    if not (tree / "Makefile").is_file():
        # The .deb holds /usr/src/<package>.tar.xz; the tree inside it is <package>/.
        _extract(engine, tools, layout, deb, tree,
                 f"dpkg-deb --fsys-tarfile /hb/in/{deb.name} | tar -xO --wildcards './usr/src/linux-source-*.tar.*' "
                 "| tar -xJ -C /hb/out")
    origin = f"{kc.mirror} {kc.suite} {kc.package}={version}"
    write_atomically(pin, json.dumps({"version": version, "sha256": sha, "tree": str(tree), "origin": origin,
                                   "mirror": kc.mirror, "suite": kc.suite, "deb": deb.name}, indent=2) + "\n")
    log.info(f"kernel source: {kc.package} {version} (sha256 {sha[:16]}…), tree {tree}")
    return KernelSource("debian", tree, version, sha, origin)


def _apt_download(kc: KernelConfig, engine: Engine, tools: ToolsImage, debs: Path) -> str:
    """apt-get download the package into `debs`; the version apt says it fetched.
    A failed download leaves no partial .deb behind."""
    require_free(debs, DEB_BYTES, f"downloading {kc.package}")
    # apt checks the mirror's signed indexes; our own sources list, so the
    # tools image's apt config does not matter.
    script = (
        "set -e; "
        f"echo 'deb {kc.mirror} {kc.suite} main' > /tmp/sources.list; "
        "APT='-q -o Dir::Etc::SourceList=/tmp/sources.list -o Dir::Etc::SourceParts=/nonexistent "
        "-o Debug::NoLocking=1 -o APT::Sandbox::User=root'; "
        "apt-get $APT update >/dev/null; "
        f"cd /hb/debs && apt-get $APT download {kc.package}; "
        f"chown {os.getuid()}:{os.getgid()} /hb/debs/*.deb; "
        f"apt-cache $APT show --no-all-versions {kc.package} | grep -m1 '^Version:'"
    )
    lines: list[str] = []

    def show(line: str) -> None:
        lines.append(line)
        log.stream("kernel:fetch", line)

    before = set(debs.iterdir())
    with log.step(f"kernel source: {kc.package} from {kc.mirror} {kc.suite}"):
        try:
            engine.run(
                RunSpec(tools.ref, ["bash", "-c", script], step="kernel-fetch", as_root=True, kvm=False,
                        mounts=[Mount(debs, "/hb/debs", read_only=False)]),
                phase="kernel:fetch", on_line=show,
            )
        except ContainerFailed as e:
            full = _out_of_space(e, debs, DEB_BYTES, f"downloading {kc.package}")
            for p in set(debs.iterdir()) - before:  # what the failed download left
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            if full is not None:
                raise full from None
            raise
    version = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Version:")), "")
    if not version:
        raise ArtifactError(f"apt did not say which version of {kc.package} it downloaded", "see the lines above")
    return version


def _extract(engine: Engine, tools: ToolsImage, layout: Layout, archive: Path, tree: Path, command: str) -> None:
    """Extract into a staging directory and rename the single top directory into place.
    Space is checked first; a failure leaves no half-extracted tree."""
    require_free(layout.tmp_dir, TREE_BYTES, f"extracting {archive.name}")  # staged there, then renamed
    stage = new_tmp(layout, "kernel-src")
    show = _Capped("kernel:extract")
    try:
        with log.step(f"extracting {archive.name}"):
            try:
                engine.run(
                    RunSpec(tools.ref, ["bash", "-o", "pipefail", "-c", command], step="kernel-extract", kvm=False,
                            network="none",
                            mounts=[Mount(archive.parent, "/hb/in"), Mount(stage, "/hb/out", read_only=False)]),
                    phase="kernel:extract", on_line=show,
                )
            except ContainerFailed as e:
                full = _out_of_space(e, layout.tmp_dir, TREE_BYTES, f"extracting {archive.name}", show.no_space)
                if full is not None:
                    raise full from None
                raise
            finally:
                show.summary()
        tops = [p for p in stage.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "Makefile").is_file():
            raise ArtifactError(f"{archive.name} does not hold one Linux source tree", "check the kernel source settings")
        if tree.exists():
            shutil.rmtree(tree)
        os.rename(tops[0], tree)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _out_of_space(e: ContainerFailed, where: Path, need: int, what: str, said_so: bool = False) -> Optional[DiskSpaceError]:
    """A step that failed because the disk under `where` filled (apt and tar say so:
    ENOSPC's text), as one line; None for any other failure. Called before its
    leftovers are removed, so the free space shown is what the step ran into."""
    if not said_so and NO_SPACE not in e.log_tail:
        return None
    free = shutil.disk_usage(where).free
    return DiskSpaceError(
        f"{what} ran out of space on the disk under {where} ({free / 2**20:.0f} MiB free, about {need / 2**20:.0f} MiB needed)",
        "free some space, or point work_dir (HACKBACK_WORK_DIR) at a larger disk; what the failed step left was removed",
    )


class _Capped:
    """Show a step's first lines only: tar on a full disk prints one error per file (tens of thousands)."""

    LIMIT = 10

    def __init__(self, phase: str) -> None:
        self.phase, self.seen, self.no_space = phase, 0, False

    def __call__(self, line: str) -> None:
        self.seen += 1
        self.no_space = self.no_space or NO_SPACE in line
        if self.seen <= self.LIMIT:
            log.stream(self.phase, line)

    def summary(self) -> None:
        if self.seen > self.LIMIT:
            log.stream(self.phase, f"({self.seen - self.LIMIT} more lines not shown)")
