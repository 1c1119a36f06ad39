"""Hypothesis strategies: valid manifests from examples/, and mutations of them.

>>> from strategies import mutated_manifests
>>> text = mutated_manifests().example()   # doctest: +SKIP
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_texts() -> list[str]:
    """Every example manifest file's text, one document or several."""
    return [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.rglob("*.yaml"))]


def example_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for text in example_texts():
        docs.extend(d for d in yaml.safe_load_all(text) if isinstance(d, dict))
    return docs


TEXTS = example_texts()
DOCUMENTS = example_documents()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["yes", "no", "on", "1.10", "1e-4", "0x1F", "~", "", "x-", "null", ".inf"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["type", "name", "x-ext", "spec", "kind", "apiKeys"]))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_data(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with one to three structural changes: a key deleted, a key inserted, a
    value replaced by another type, or a string replaced by random Unicode."""
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent_path, last = path[:-1], path[-1] if path else None
        action = draw(st.sampled_from(["delete", "insert", "retype", "unicode"]))
        target = _get(doc, path)
        if action == "insert" and isinstance(target, dict):
            target[draw(keys)] = draw(values)
        elif action == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(values))
        elif path and action == "delete":
            parent = _get(doc, parent_path)
            del parent[last]
        elif path and action == "retype":
            _get(doc, parent_path)[last] = draw(values)
        elif path and action == "unicode":
            _get(doc, parent_path)[last] = draw(st.text(min_size=1, max_size=30))
    return doc


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None)


GARBAGE = [":", ": ", "- ", "-", "&a ", "*a", "*b", "!!", "!!str ", "!!map ", "{", "}", "[", "]", ",",
           "'", '"', "\t", "\n", "---\n", "...\n", "%YAML 1.2\n", "? ", "|", ">", "#", "\\", "\x00",
           "\x85", "\u2028", "\ufeff", "é", "\U0001f600", "  ", "x-a: 1\n", "<<: *a\n"]


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """A valid manifest file with textual damage: truncated, YAML-ish garbage or random text
    inserted, a line deleted or duplicated."""
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "garbage", "unicode", "drop-line", "dup-line"]))
        pos = draw(st.integers(0, len(text)))
        if action == "truncate":
            text = text[:pos]
        elif action == "garbage":
            text = text[:pos] + "".join(draw(st.lists(st.sampled_from(GARBAGE), min_size=1, max_size=4))) + text[pos:]
        elif action == "unicode":
            text = text[:pos] + draw(st.text(min_size=1, max_size=10)) + text[pos:]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i + 1] = [] if action == "drop-line" else [lines[i], lines[i]]
            text = "\n".join(lines)
    return text


def mutated_manifests() -> st.SearchStrategy[str]:
    """Damaged manifests, as text: structural changes dumped to YAML, and textual damage."""
    return st.one_of(mutated_data().map(dump), mutated_text())
