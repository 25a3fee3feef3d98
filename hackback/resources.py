"""Files shipped with hackback: Dockerfiles (docker/), gem5 run scripts (configs/), defaults."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _top(name: str) -> Path:
    # In a checkout (or an editable install) they sit beside the package; in a
    # wheel, setuptools maps them into it (see pyproject.toml, package-dir).
    for candidate in (_PKG.parent / name, _PKG / name):
        if candidate.is_dir():
            return candidate
    import importlib.resources

    return Path(str(importlib.resources.files(f"hackback.{name}")))


def docker_dir(image: str) -> Path:
    return _top("docker") / image


def configs_dir() -> Path:
    return _top("configs")
