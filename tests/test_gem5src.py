from __future__ import annotations

import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from hackback.services import gem5src
from hackback.store.hashes import HashCache
from hackback.store.layout import Layout
from hackback.base.errors import Gem5SourceError, UsageError


def test_describe_reads_release_tags_and_git_state(tmp_path: Path, fake_gem5_tree: Path) -> None:
    hashes = HashCache(tmp_path / "h.sqlite")
    src = gem5src.describe(fake_gem5_tree, "local", hashes)
    assert src.release == "24.0.0.1"
    assert src.version_tags == ("cpu-pid", "smt-interrupts")
    assert src.commit is None and src.dirty is None
    subprocess.run(["git", "init", "-q", str(fake_gem5_tree)], check=True)
    subprocess.run(["git", "-C", str(fake_gem5_tree), "add", "."], check=True)
    subprocess.run(["git", "-C", str(fake_gem5_tree), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    clean = gem5src.describe(fake_gem5_tree, "local", hashes)
    assert clean.commit and len(clean.commit) == 40 and clean.dirty is False
    assert clean.tree_sha256 == src.tree_sha256  # .git is not part of the tree
    (fake_gem5_tree / "src" / "base" / "version.cc").write_text(
        (fake_gem5_tree / "src" / "base" / "version.cc").read_text() + "// my change\n"
    )
    edited = gem5src.describe(fake_gem5_tree, "local", hashes)
    assert edited.dirty is True and edited.tree_sha256 != src.tree_sha256
    assert edited.m5_sha256 == src.m5_sha256  # m5 does not depend on src/


def test_build_outputs_inside_the_tree_do_not_change_its_digest(tmp_path: Path, fake_gem5_tree: Path) -> None:
    hashes = HashCache(tmp_path / "h.sqlite")
    before = gem5src.describe(fake_gem5_tree, "local", hashes)
    (fake_gem5_tree / "build" / "X86").mkdir(parents=True)
    (fake_gem5_tree / "build" / "X86" / "gem5.opt").write_text("binary")
    (fake_gem5_tree / "util" / "m5" / "build").mkdir()
    (fake_gem5_tree / "util" / "m5" / "build" / "m5").write_text("binary")
    after = gem5src.describe(fake_gem5_tree, "local", hashes)
    assert (after.tree_sha256, after.m5_sha256) == (before.tree_sha256, before.m5_sha256)


def test_tarball_is_extracted_once(tmp_path: Path, make_config, fake_gem5_tree: Path) -> None:  # type: ignore[no-untyped-def]
    tarball = tmp_path / "gem5.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(fake_gem5_tree, arcname="gem5-24.0.0.1")
    cfg = make_config(gem5__src=str(tarball))
    hashes = HashCache(tmp_path / "h.sqlite")
    src = gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), hashes)
    assert src.release == "24.0.0.1" and src.origin.startswith("tarball")
    assert src.path.parent == cfg.work_dir / "cache" / "src"
    mtime = src.path.stat().st_mtime_ns
    assert gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), hashes).path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("what", ["missing", "not-gem5", "plain-file"])
def test_bad_gem5_src_is_one_line_naming_the_flag(tmp_path: Path, make_config, what: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / what
    if what == "not-gem5":
        path.mkdir()
    elif what == "plain-file":
        path.write_text("hello")
    cfg = make_config(gem5__src=str(path))
    with pytest.raises(UsageError) as e:
        gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), HashCache(tmp_path / "h.sqlite"))
    assert "--gem5-src" in e.value.one_line() and "\n" not in e.value.one_line()


def test_unreachable_upstream_fails_fast_with_the_hint(tmp_path: Path, make_config) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(gem5__repo="https://gem5.invalid/gem5.git", gem5__clone_timeout=60)
    start = time.monotonic()
    with pytest.raises(Gem5SourceError) as e:
        gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), HashCache(tmp_path / "h.sqlite"))
    assert time.monotonic() - start < 61
    assert "--gem5-src" in e.value.one_line()
    assert list((cfg.work_dir / ".tmp").iterdir()) == []


class TestBadTarball:
    """A damaged or unsafe --gem5-src tarball is one line; nothing is left in the
    work dir's staging or cache, and nothing is written outside it."""

    def _resolve(self, tmp_path: Path, make_config, tarball: Path) -> str:  # type: ignore[no-untyped-def]
        cfg = make_config(gem5__src=str(tarball))
        with pytest.raises(UsageError) as e:
            gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), HashCache(tmp_path / "h.sqlite"))
        line = e.value.one_line()
        assert "\n" not in line and str(tarball) in line
        assert list((cfg.work_dir / ".tmp").iterdir()) == []  # the half-extracted tree is gone
        assert not (cfg.work_dir / "cache" / "src").exists() or list((cfg.work_dir / "cache" / "src").iterdir()) == []
        return line

    @pytest.mark.parametrize("mode", ["w:gz", "w"])
    def test_truncated(self, tmp_path: Path, make_config, fake_gem5_tree: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
        import os

        (fake_gem5_tree / "big.bin").write_bytes(os.urandom(256 << 10))  # so the cut falls inside a member
        whole = tmp_path / "whole.tar"
        with tarfile.open(whole, mode) as tf:
            tf.add(fake_gem5_tree, arcname="gem5-24.0.0.1")
        cut = tmp_path / "gem5.tar"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        assert "damaged or truncated" in self._resolve(tmp_path, make_config, cut)

    def test_a_member_outside_the_tree(self, tmp_path: Path, make_config, fake_gem5_tree: Path) -> None:  # type: ignore[no-untyped-def]
        import io

        evil = tmp_path / "evil.tar"
        with tarfile.open(evil, "w") as tf:
            tf.add(fake_gem5_tree, arcname="gem5")
            member = tarfile.TarInfo("gem5/../../../escaped")
            member.size = 3
            tf.addfile(member, io.BytesIO(b"bad"))
        assert "unsafe to extract" in self._resolve(tmp_path, make_config, evil)
        assert not any(p.name == "escaped" for p in tmp_path.rglob("escaped"))

    def test_an_absolute_link(self, tmp_path: Path, make_config, fake_gem5_tree: Path) -> None:  # type: ignore[no-untyped-def]
        evil = tmp_path / "link.tar"
        with tarfile.open(evil, "w") as tf:
            tf.add(fake_gem5_tree, arcname="gem5")
            member = tarfile.TarInfo("gem5/passwd")
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(member)
        assert "unsafe to extract" in self._resolve(tmp_path, make_config, evil)
