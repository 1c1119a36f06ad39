"""The fast parse path (libyaml's C composer) gives exactly what the event path gives.

``parse_text`` composes nodes in C when an input has no tags, anchors or aliases, and falls back
to the event path for everything else and for every input with an error. On any input the fast
path accepts, data and positions must be identical to the event path's.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import DOCUMENTS, TEXTS, dump, mutated_data, mutated_text

from lmspec.manifests.document import Document, Loc
from lmspec.validator import parse

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _agree(text: str) -> bool:
    """True when the fast path took the input; asserts it agrees with the event path."""
    fast = parse._compose_documents(text)
    if fast is None:
        assert parse._compose_documents(text, positions=False) is None
        return False
    slow = list(parse._documents(text, "m.yaml"))  # the fast path accepted it: so must this
    flat = parse._compose_documents(text, positions=False)  # positions kept compact
    assert flat is not None and len(fast) == len(slow) == len(flat)
    for (fd, floc, _), (sd, sloc), (cd, _, packed) in zip(fast, slow, flat, strict=True):
        assert _same(fd, sd), (fd, sd)
        assert floc == (sloc if isinstance(sloc, Loc) else Loc(sloc))
        assert _same(cd, sd), (cd, sd)
        doc = Document(cd, "m.yaml", 0, None, text, packed)
        assert doc.positions() == floc
    return True


def test_examples_take_the_fast_path() -> None:
    assert TEXTS and all(_agree(t) for t in TEXTS)
    assert all(_agree(dump(d)) for d in DOCUMENTS)


def test_declined_inputs() -> None:
    for text in ("a: !!str 1\n", "a: &x 1\nb: *x\n", "a: 1\na: 2\n", "a: [1\n", "? [a]\n: 1\n",
                 "[" * 70 + "]" * 70 + "\n"):
        assert parse._compose_documents(text) is None, text


@SETTINGS
@given(mutated_data())
def test_structural_mutations(doc: dict[str, object]) -> None:
    _agree(dump(doc))


@SETTINGS
@given(mutated_text())
def test_textual_mutations(text: str) -> None:
    try:
        _agree(text)
    except parse.ParseError as exc:  # only the event path raises: the fast path must have declined
        raise AssertionError(f"fast path accepted an input the event path rejects: {exc}") from None


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1.-: \n[]{},'\"#~+eE0xo|>\t")), max_size=80))
def test_yaml_like_text(text: str) -> None:
    try:
        _agree(text)
    except parse.ParseError as exc:
        raise AssertionError(f"fast path accepted an input the event path rejects: {exc}") from None
