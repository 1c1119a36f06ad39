"""The import contract: lmspec's layers import one way (pyproject.toml, ``[tool.importlinter]``),
and no modules import each other in a circle, function-level and ``TYPE_CHECKING`` imports
included. ``.ci/run`` runs ``lint-imports`` too; this keeps ``scripts/test.sh`` honest without it."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    scc.append(m)
                    if m == node:
                        break
                if len(scc) > 1:
                    found.append(sorted(scc))
    return found


def test_circles_finds_a_circle_and_nothing_else() -> None:
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")):
        graph.add_import(importer=a, imported=b)
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_modules_import_each_other_in_a_circle() -> None:
    found = circles(grimp.build_graph("lmspec", cache_dir=None))
    assert found == [], "modules that import each other, directly or through others:\n" + "\n".join(
        "  " + " ↔ ".join(c) for c in found)


def test_the_layers_contract_holds(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter import cli  # noqa: F401  (configures import-linter as its command does)
    from importlinter.application import use_cases

    ok = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert ok, capsys.readouterr().out
