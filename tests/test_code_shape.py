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


# ---------------------------------------------------------------- issue #24: the house's typed seams

ANY_DICT_CEILING = 96  # `dict[str, Any]` in hackback/: it only goes down (lower it when you remove some)


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE.parent)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_cycle_anywhere_in_the_package_lazy_imports_included() -> None:
    """grimp (import-linter's graph) sees every import, a function's lazy one too."""
    import grimp

    graph = grimp.build_graph("hackback", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    assert len(graph.modules) > 40 and not cycles, cycles


def test_no_step_walks_a_manifest_as_a_dict() -> None:
    """Manifests are read through records (Record.of) and the Manifest's typed reads,
    in the store only: records.py, manifest.py and build.py (the one way an artifact is made)."""
    import re

    walk = re.compile(r'\.parts\b|\.part\(|\[["\'](info|outputs|inputs_digest)["\']\]|\.get\(["\'](info|outputs|inputs_digest)["\']')
    found = [f"{path}:{n} {line.strip()}" for path, text in _sources().items()
             if not path.endswith(("records.py", "manifest.py", "build.py"))
             for n, line in enumerate(text.splitlines(), 1) if walk.search(line) and "name.parts" not in line]
    assert not found, found


def test_dict_str_any_only_goes_down() -> None:
    count = sum(text.count("dict[str, Any]") for text in _sources().values())
    assert count <= ANY_DICT_CEILING, f"{count} `dict[str, Any]` in hackback/, the ceiling is {ANY_DICT_CEILING}: type what you added"


def test_no_module_keeps_per_task_state_in_a_global() -> None:
    """Per-task facts (dry run, work-dir label, memos) live in the task's StepContext;
    the one `global` left is the terminal's live progress display (one per process)."""
    globals_ = [f"{path}:{node.lineno} global {', '.join(node.names)}" for path, text in _sources().items()
                for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Global)]
    assert globals_ == [g for g in globals_ if g.startswith("hackback/base/log.py:") and g.endswith("global _live")], globals_
