"""The shape the house keeps (issue #13), checked on the source: no function in
hackback/ or configs/ over 50 lines or over 7 parameters. The import layering is checked by
import-linter's contracts in pyproject.toml (`lint-imports`, run by .ci/run)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hackback"
CONFIGS = PACKAGE.parent / "configs"  # the gem5 run scripts keep the same shape
MAX_LINES, MAX_PARAMS = 50, 7


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted([*PACKAGE.rglob("*.py"), *CONFIGS.glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", node))
    return out


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return len([n for n in names if n not in ("self", "cls")]) + (a.vararg is not None) + (a.kwarg is not None)


def test_the_check_sees_the_package() -> None:
    assert len(_functions()) > 200


def test_no_function_is_over_50_lines() -> None:
    long = [f"{where} ({fn.end_lineno - fn.lineno + 1} lines)" for where, fn in _functions()  # type: ignore[operator]
            if fn.end_lineno - fn.lineno + 1 > MAX_LINES]  # type: ignore[operator]
    assert not long, long


def test_no_function_takes_over_7_parameters() -> None:
    many = [f"{where} ({_params(fn)} parameters)" for where, fn in _functions() if _params(fn) > MAX_PARAMS]
    assert not many, many
