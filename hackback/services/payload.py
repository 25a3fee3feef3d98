"""A payload for one restore: directories whose files are in the guest, in
/root/payload (the script's working directory), before the script starts,
carried through `m5 readfile` so the image and the checkpoint stay untouched.

The readfile is one stream (gem5's readfile has no offset argument for the m5
utility, and its own offset is a 32-bit int): a `#!/bin/sh` header that says
where the script and the index are (hackback/guest/payload-header.sh), the
script, an index (a line per file, directory or symlink: type, mode, size,
offset, path), then each file's bytes at a page-aligned offset. hackback-guest
maps each file and has gem5 write its bytes straight into the guest's page
cache (m5 readfile at the file's offset): no copy in the guest, no tar process
(a tar through a pipe cost ~4.5 host s per MiB on the atomic CPU, three copies
of every byte). The header does the same with dd for guests from before it.

What the script leaves in /root/results comes back as one tar
(hackback-results.tar, through `m5 writefile`) and is unpacked into the run's
results/ directory.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..base import log, resources
from ..store.hashes import HashCache, digest_of
from ..base.errors import ResultsLost, UsageError

HEADER = resources.package_file("guest/payload-header.sh")
SCRIPT_AT = 4096  # the header is padded to this; the script follows
ALIGN = 4096
MAX_STREAM = 2**31 - 1  # gem5's readfile offset is a 32-bit int
RESULTS_TAR = "hackback-results.tar"  # what hackback-guest sends with m5 writefile
RESULTS_DIR = "results"  # in the run directory
GUEST_DIR = "/root/payload"


@dataclass(frozen=True)
class Payload:
    dirs: tuple[Path, ...]
    files: tuple[tuple[str, Path], ...]  # (name in the guest, host file), sorted
    bytes: int  # the files' sizes, summed

    def sha256(self, hashes: HashCache) -> str:
        """The payload's identity: every directory's tree digest, in order."""
        return digest_of([hashes.tree_sha256(d) for d in self.dirs])


def collect(dirs: Sequence[Path], limit: int) -> Payload:
    """The payload of these directories, refused in one line when it cannot be
    carried: not a directory, special files, symlinks out of it, a name in two
    of them, or more than `limit` bytes."""
    files: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"payload {d} is not a directory", "give --payload a directory whose files the script needs")
        for name, path in _walk(d.resolve()):
            if name in files:
                raise UsageError(f"payload file {name} is in two payload directories ({files[name]} and {path})",
                                 "give each file once")
            files[name] = path
    _refuse_clashes(files)
    total = sum(st.st_size for p in files.values() if stat.S_ISREG((st := p.lstat()).st_mode))
    if total > limit:
        raise UsageError(f"the payload is {total / 2**20:.1f} MiB, over restore.payload_max_bytes ({limit / 2**20:.0f} MiB)",
                         "bring less, bake large inputs into the image (image.user_scripts), or raise the limit")
    return Payload(tuple(d.resolve() for d in dirs), tuple(sorted(files.items())), total)


def _refuse_clashes(files: dict[str, Path]) -> None:
    """What the guest would merge: a name that is a file or a symlink in one
    payload directory and a directory above another's file (its unpacking would
    write through the link, or fail)."""
    for name, path in files.items():
        for parent in PurePosixPath(name).parents:
            other = files.get(str(parent))
            if other is not None:
                what = "a symlink" if other.is_symlink() else "a file"
                raise UsageError(f"payload {other} is {what} in the guest's {GUEST_DIR}/{parent}, where {path} needs a "
                                 "directory", "give each path once: rename one, or merge the payload directories")


def _walk(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            for what, text in (("name", rel), ("symlink target", os.readlink(path) if stat.S_ISLNK(mode) else "")):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    shown = os.fsencode(text).decode("utf-8", "backslashreplace")
                    raise UsageError(f"payload {what} '{shown}' (in {root}) is not valid UTF-8",
                                     "rename it to UTF-8 (e.g. convmv -f latin1 -t utf8 --notest)") from None
            if "\t" in rel or "\n" in rel or (stat.S_ISLNK(mode) and any(c in os.readlink(path) for c in "\t\n")):
                raise UsageError(f"payload name {rel!r} holds a tab or a newline", "rename it: the payload's index is one line per file")
            if stat.S_ISLNK(mode):
                target = (path.parent / os.readlink(path)).resolve()
                if root not in (target, *target.parents):
                    raise UsageError(f"payload symlink {path} points out of {root} (to {target})",
                                     "copy what it points to into the payload instead")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UsageError(f"payload {path} is a special file (device, FIFO or socket)", "leave it out of the payload")
            if stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
                continue  # directories come with their files (an empty one is left out)
            out.append((rel, path))
    return out


def _index(payload: Payload, data_at: int) -> tuple[bytes, list[tuple[int, Path]]]:
    """The index lines and where each file's bytes go, from `data_at` on, page-aligned."""
    lines, placed = [], []
    at = data_at
    for name, path in payload.files:
        st = path.lstat()
        mode = f"{stat.S_IMODE(st.st_mode):o}"
        if stat.S_ISLNK(st.st_mode):
            lines.append(f"l\t0\t0\t0\t{name}\t{os.readlink(path)}")
        else:
            lines.append(f"f\t{mode}\t{st.st_size}\t{at}\t{name}\t")
            placed.append((at, path))
            at += -(-st.st_size // ALIGN) * ALIGN
    return ("\n".join(lines) + "\n").encode(), placed


def write_stream(script: Path, payload: Payload, out: Path) -> int:
    """header + script + index + the files' bytes into `out`; its size. Refuses a
    stream gem5 cannot hand over."""
    body = script.read_bytes()
    index_at = SCRIPT_AT + -(-len(body) // ALIGN) * ALIGN
    probe, _ = _index(payload, 0)
    data_at = index_at + -(-(len(probe) + 64 * len(payload.files) + 64) // ALIGN) * ALIGN  # room for longer offsets
    index, placed = _index(payload, data_at)
    assert index_at + len(index) <= data_at
    end = placed[-1][0] + placed[-1][1].stat().st_size if placed else data_at
    if end > MAX_STREAM:
        raise UsageError(f"script and payload come to {end / 2**30:.2f} GiB; gem5's readfile stops at 2 GiB (a 32-bit offset)",
                         "bring less, or bake large inputs into the image")
    text = HEADER.read_text()
    for key, value in (("stream_bytes", end), ("script_bytes", len(body)), ("script_from", SCRIPT_AT + 1), ("index_bytes", len(index)),
                       ("index_from", index_at + 1), ("script", SCRIPT_AT), ("index", index_at)):
        text = text.replace(f"@{key}@", str(value))
    header = text.encode()
    assert len(header) < SCRIPT_AT, "payload-header.sh must fit in SCRIPT_AT bytes"
    with open(out, "wb") as f:
        f.write(header.ljust(SCRIPT_AT, b"\n"))
        f.write(body.ljust(index_at - SCRIPT_AT, b"\n"))
        f.write(index.ljust(data_at - index_at, b"\n"))
        for at, path in placed:
            f.seek(at)
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        f.truncate(end)
    return end


# hackback-guest's line after sending what the script left in /root/results (none: it left nothing).
_RESULTS_LINE = re.compile(r"^HACKBACK-RESULTS (sent|failed)(?: bytes=(\d+))?", re.M)


def unpack_results(run_dir: Path, console: str = "") -> list[Path]:
    """hackback-results.tar (if the script left results) into results/; the files,
    sorted. Raises ResultsLost when the guest's console says results were sent
    and they did not all arrive, or that sending them failed."""
    tar_path = run_dir / RESULTS_TAR
    said = _RESULTS_LINE.findall(console)
    if said:
        state, size = said[-1]
        if state == "failed":
            raise ResultsLost("the guest could not send what the script left in /root/results (HACKBACK-RESULTS failed)")
        if not tar_path.is_file():
            raise ResultsLost(f"the guest sent what the script left in /root/results, but no {RESULTS_TAR} arrived")
        if size and tar_path.stat().st_size != int(size):
            raise ResultsLost(f"the guest sent {size} bytes of results, {tar_path.stat().st_size} arrived")
    if not tar_path.is_file():
        return []
    dest = run_dir / RESULTS_DIR
    dest.mkdir(exist_ok=True)
    skipped = []
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            # Only plain files and directories inside results/: what the guest sends is not trusted.
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                skipped.append(member.name)
                continue
            tar.extract(member, dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # type: ignore[arg-type]
    if skipped:
        log.warn(f"results: left out {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that were not plain files "
                 f"inside the results directory: {', '.join(skipped[:3])}")
    tar_path.unlink()
    return sorted(p for p in dest.rglob("*") if p.is_file())


def describe(payload: Payload) -> str:
    return f"{len(payload.files)} file(s), {payload.bytes / 2**20:.1f} MiB, into {GUEST_DIR}"

