"""Files shipped with hackback: Dockerfiles (docker/), gem5 run scripts (configs/), defaults."""
from __future__ import annotations

from pathlib import Path



def _package() -> Path:
    # The package's own directory wherever this module sits inside it (a subpackage
    # too): the data directories (guest/, linux/, sbatch/, suites/) are at its top.
    here = Path(__file__).resolve()
    return next(p for p in here.parents if p.name == "hackback" and (p / "__init__.py").is_file())


PACKAGE = _package()
_PKG = PACKAGE


def _top(name: str, marker: str) -> Path:
    # In a wheel setuptools maps them into the package (pyproject.toml,
    # package-dir); in a checkout or editable install they sit beside it. The
    # marker matters: beside an installed package, site-packages/docker is the
    # Docker SDK.
    for candidate in (_PKG / name, _PKG.parent / name):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"hackback's {name}/ directory is missing from {_PKG} (a broken install?)")


def docker_dir(image: str) -> Path:
    return _top("docker", "tools/Dockerfile") / image


def configs_dir() -> Path:
    """gem5 run scripts, mounted read-only into the env image."""
    return _top("configs", "hackback_fs.py")


def package_file(relative: str) -> Path:
    """A data file inside the package (guest scripts, templates)."""
    return _PKG / relative
