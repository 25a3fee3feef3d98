"""hackback's kernel patches: they apply to Debian's real 6.1 source (Docker
tier), in a copy; the pristine tree is not changed."""
from __future__ import annotations

from pathlib import Path

import pytest

from hackback.services import kernel_patch
from hackback.store.hashes import HashCache
from hackback.store.layout import Layout

pytestmark = pytest.mark.docker
APIC = Path("arch/x86/kernel/apic/apic.c")


def test_patches_are_data_files_with_a_reason() -> None:
    found = kernel_patch.patches()
    assert [p.name for p in found] == ["0001-x86-apic-lapic_timer_period-boot-parameter.patch"]
    assert all("hackback" in p.read_text().splitlines()[0] for p in found)  # each says whose and why
    assert [i["sha256"] for i in kernel_patch.identity()] == [HashCache.sha256_uncached(p) for p in found]


def test_patches_apply_to_a_copy_and_leave_the_pristine_source_as_it_was(engine, tools, session_work: Path) -> None:  # type: ignore[no-untyped-def]
    from hackback.base import config
    from hackback.services import kernel_src

    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    layout = Layout(cfg.work_dir)
    source = kernel_src.resolve(cfg.kernel, engine, tools, layout, HashCache(layout.hash_db))
    assert source.tree is not None
    before = HashCache.sha256_uncached(source.tree / APIC)
    patched = kernel_patch.patched_tree(source.tree, layout, engine, tools.ref)
    assert patched != source.tree and patched.parent == source.tree.parent
    assert 'early_param("lapic_timer_period"' in (patched / APIC).read_text()
    assert HashCache.sha256_uncached(source.tree / APIC) == before
    assert (patched / "Makefile").stat().st_ino == (source.tree / "Makefile").stat().st_ino  # shared, not copied
    assert kernel_patch.patched_tree(source.tree, layout, engine, tools.ref) == patched  # made once
