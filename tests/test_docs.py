"""The docs: the reference pages are what hackback itself generates (so a new
task, flag, config key, exit code or variable cannot go undocumented), and the
site builds with MkDocs with warnings as errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hackback.base import config
from hackback import reference, tasks

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", reference.PAGES)
def test_the_committed_reference_page_is_what_hackback_generates(page: str) -> None:
    committed = (REPO / "docs" / "reference" / page).read_text()
    assert committed == reference.pages()[page], f"regenerate it: python -m hackback.reference docs/reference ({page})"


def test_every_task_flag_and_config_key_is_in_the_reference() -> None:
    text = "\n".join(reference.pages().values())
    for spec in tasks.TASKS:
        assert f"## hackback {spec.name}" in text
        for option in spec.options:
            assert f"--{tasks._flag(option)}" in text, (spec.name, option)
    for key in config._known_keys():
        assert f"### `{key}`" in text, key


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is a test dependency (pip install -e '.[test]')"
    out = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "getting-started" / "index.html").is_file()


def test_every_relative_link_of_the_readme_and_the_docs_resolves() -> None:
    """GitHub shows the README and docs/ as they are: a link to a moved page must fail here."""
    import re

    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if not path or "://" in path or path.startswith("mailto:"):
                continue
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
