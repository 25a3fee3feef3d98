"""`hackback export`: a checkpoint, its kernel and disk image as gem5 resources,
so a researcher's own stdlib script can `obtain_resource(...)` them offline
with GEM5_RESOURCE_JSON=<export>/resources.json (which replaces every other
source; GEM5_RESOURCE_JSON_APPEND still asks the online database first).

The JSON is in the form gem5 v24.0's resources code reads
(src/python/gem5/resources: client_api/jsonclient.py, resource.py,
downloader.py, md5_utils.py): a list of resources, each with id, category,
resource_version, gem5_versions (gem5 compares its release's "major.minor"),
a file:// url and md5sum. The kernel is the one the checkpoint was taken with
(the stripped copy gem5 booted), md5 of the file; the disk image names its
root_partition; the checkpoint is a tar (is_tar_archive) holding m5.cpt, the
memory image and the disk's .cow at its root, md5 the md5_dir gem5 computes
over the unpacked directory. A workload resource ties them together
(set_kernel_disk_workload, the kernel command line as additional_params),
naming each by {id, resource_version}.

gem5 copies a file:// resource into its resource directory (GEM5_RESOURCE_DIR,
default ~/.cache/gem5) with shutil.copy, which writes every zero of a sparse
disk image (4 GiB on disk for a 4 GiB image that holds 0.8 GiB), and checks the
md5 only when a copy is already there. With --resource-dir, the export seeds
that directory itself: sparse copies under the resources' ids, which gem5 finds
with the right md5 and uses without copying."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..base import log
from ..store.build import Target, build_unless_fresh
from ..store.hashes import file_record
from ..store.layout import make_dir
from ..store.manifest import Manifest
from ..protocol.context import StepContext
from ..protocol.step import Request, Step
from ..store.records import CheckpointArtifact

VERSION = "1.0.0"
_CHUNK = 4 << 20


@dataclass(frozen=True)
class Exported:
    directory: Path
    json: Path
    ids: dict[str, str]  # kernel, disk_image, checkpoint, workload -> resource id


def export(ctx: StepContext, cpt: CheckpointArtifact, resource_dir: Optional[Path] = None, force: bool = False) -> Exported:
    kernel = cpt.gem5_kernel(cpt.info.kernel.path)
    disk = cpt.info.image.path
    ids = {k: f"hackback-{cpt.name}-{k.replace('_', '-')}" for k in ("kernel", "disk_image", "checkpoint", "workload")}
    release = cpt.info.gem5.release
    want = {"checkpoint": cpt.identity_digest(), "kernel_sha256": ctx.hashes.sha256(kernel),
            "disk_sha256": ctx.hashes.sha256(disk), "format": 1}

    def build(tmp: Path, manifest: Manifest) -> None:
        with log.step(f"export of checkpoint '{cpt.name}': tar of {cpt.cpt.name}, md5 sums as gem5 computes them"):
            tar = tmp / f"{cpt.cpt.name}.tar"
            _tar_flat(cpt.cpt, tar)
            final = ctx.layout.artifact_dir("exports", cpt.name)
            entries = _entries(ids, release, cpt, kernel, disk, final / tar.name)
            (tmp / "resources.json").write_text(json.dumps(entries, indent=2))
        manifest.set_part("export", want, {n: file_record(tmp / n, ctx.hashes) for n in ("resources.json", tar.name)},
                          {"ids": ids, "checkpoint": cpt.name, "gem5_versions": [_major_minor(release)]})

    done = build_unless_fresh(ctx.layout, Target("exports", cpt.name, "export", f"export of '{cpt.name}'"), want, force, build)
    out = Exported(done.directory, done.directory / "resources.json", ids)
    if resource_dir is not None:
        seed(out, resource_dir)
    log.info(f"gem5 resources for checkpoint '{cpt.name}': GEM5_RESOURCE_JSON={out.json}; ids: "
             + ", ".join(ids.values()))
    return out


def _major_minor(release: str) -> str:
    return ".".join(release.split(".")[:2])  # what gem5's ClientQuery compares


def _entries(ids: dict[str, str], release: str, cpt: CheckpointArtifact, kernel: Path, disk: Path,
             tar: Path) -> list[dict[str, Any]]:
    common = {"resource_version": VERSION, "gem5_versions": [_major_minor(release)], "architecture": "X86",
              "source": "hackback", "is_zipped": False}
    partuuid_part = "1"  # hackback's image: one partition, the root
    return [
        {**common, "id": ids["kernel"], "category": "kernel", "description": f"Linux for gem5, as checkpoint '{cpt.name}' booted it",
         "url": kernel.resolve().as_uri(), "md5sum": md5_file(kernel)},
        {**common, "id": ids["disk_image"], "category": "disk-image", "description": f"the disk image of checkpoint '{cpt.name}'",
         "url": disk.resolve().as_uri(), "md5sum": md5_file(disk), "root_partition": partuuid_part},
        {**common, "id": ids["checkpoint"], "category": "checkpoint", "description": f"hackback checkpoint '{cpt.name}' ({cpt.cpt.name})",
         "url": tar.as_uri(), "md5sum": md5_dir(cpt.cpt), "is_tar_archive": True},
        {**common, "id": ids["workload"], "category": "workload", "description": f"restore checkpoint '{cpt.name}'",
         "function": "set_kernel_disk_workload",
         "resources": {k: {"id": ids[k], "resource_version": VERSION} for k in ("kernel", "disk_image", "checkpoint")},
         "additional_params": {"kernel_args": cpt.info.kernel_args.split()}},
    ]


def _tar_flat(directory: Path, tar: Path) -> None:
    """The directory's files at the tar's root (gem5 unpacks it into <resource dir>/<id>/)."""
    with tarfile.open(tar, "w") as t:
        for p in sorted(directory.iterdir()):
            t.add(p, arcname=p.name)


# md5 exactly as gem5 v24.0's md5_utils computes it: a file's bytes; a
# directory's entries sorted by str(path).lower(), each its name then its
# content (recursively).
def md5_file(path: Path) -> str:
    return str(_update_file(path, hashlib.md5()).hexdigest())


def md5_dir(directory: Path) -> str:
    return str(_update_dir(directory, hashlib.md5()).hexdigest())


def _update_file(path: Path, h: Any) -> Any:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h


def _update_dir(directory: Path, h: Any) -> Any:
    for p in sorted(directory.iterdir(), key=lambda q: str(q).lower()):
        h.update(p.name.encode())
        if p.is_file():
            h = _update_file(p, h)
        elif p.is_dir():
            h = _update_dir(p, h)
    return h


def seed(exported: Exported, resource_dir: Path) -> None:
    """gem5's resource directory, filled as gem5 would fill it but sparse: each
    resource under its id (the checkpoint unpacked), so obtain_resource finds
    a copy with the right md5 and copies nothing."""
    make_dir(resource_dir, "the gem5 resource directory")
    entries = {e["id"]: e for e in json.loads(exported.json.read_text())}
    for key in ("kernel", "disk_image", "checkpoint"):
        e = entries[exported.ids[key]]
        dest = resource_dir / e["id"]
        src = Path(e["url"][len("file://"):])
        if dest.exists():
            continue  # gem5 checks its md5 itself, and replaces a wrong one
        tmp = resource_dir / f".{e['id']}.hackback-tmp"
        if tmp.is_dir():
            shutil.rmtree(tmp)  # an interrupted seed's
        if e.get("is_tar_archive"):
            tmp.mkdir()
            with tarfile.open(src) as t:
                for member in t.getmembers():
                    t.extract(member, tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extract(member, tmp)
        else:
            sparse_copy(src, tmp)
        os.replace(tmp, dest)
        log.info(f"seeded {dest} (sparse)")


def sparse_copy(src: Path, dest: Path) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE): holes stay holes."""
    size = src.stat().st_size
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: no data after pos; anything else is an error
                    raise
                break
            hole = os.lseek(fi.fileno(), data, os.SEEK_HOLE)
            fi.seek(data)
            fo.seek(data)
            left = hole - data
            while left > 0:
                chunk = fi.read(min(_CHUNK, left))
                if not chunk:
                    break
                fo.write(chunk)
                left -= len(chunk)
            pos = hole
        fo.truncate(size)
    shutil.copystat(src, dest)


class ExportStep(Step):
    name = "export"
    needs = ("checkpoint",)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Exported:
        return export(ctx, deps["checkpoint"], req.resource_dir, force=req.forced(self.name))


EXPORT = ExportStep()
