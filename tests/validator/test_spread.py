"""Files parsed in forked processes (``lmspec validate`` over many files) give exactly the report
one process gives: the same findings, at the same positions, in the same order. A child that
fails costs time, never a result: its files are parsed again here."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmspec.validator import core, spread
from lmspec.validator.report import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every conformance case's source as a file, in two directories: valid and invalid documents,
    parse errors, anchors and aliases (the slow parse path), several documents per file."""
    out = tmp_path_factory.mktemp("corpus")
    n = 0
    for suite in sorted((ROOT / "conformance").rglob("*.yaml")):
        for case in yaml.safe_load(suite.read_text()).get("cases", []):
            if not isinstance(case.get("source"), str):
                continue
            for sub in ("a", "b"):
                path = out / sub / f"case-{n:04d}.yaml"
                path.parent.mkdir(exist_ok=True)
                path.write_text(case["source"])
            n += 1
    assert n > 200
    return out


def _report(corpus: Path, workers: int) -> str:
    return render(core.validate([str(corpus)], workers=workers), "json", strict=False)


def test_forked_parsing_gives_the_same_report(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alone = _report(corpus, 1)
    monkeypatch.setattr(spread, "MIN_FILES_PER_WORKER", 20)
    spawned: list[int] = []
    fork = spread._fork
    monkeypatch.setattr(spread, "_fork", lambda *a: spawned.append(len(a[0])) or fork(*a))
    received: list[int] = []
    unpack = spread._unpack  # what this process made of each batch a child sent
    monkeypatch.setattr(spread, "_unpack", lambda *a: (lambda b: received.append(len(b or [])) or b)(unpack(*a)))
    assert _report(corpus, 3) == alone
    # The work really was spread: two children beside this process, and every file of theirs
    # came from them (none parsed again here after a failure).
    assert len(spawned) == 2 and sum(received) == sum(spawned)
    assert '"line"' in alone and '"schema.unknown-key"' in alone  # positions and findings compared


def test_a_failing_child_costs_nothing_but_time(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alone = _report(corpus, 1)
    monkeypatch.setattr(spread, "MIN_FILES_PER_WORKER", 20)

    dumps, parent = pickle.dumps, os.getpid()

    def broken(*args: Any, **kwargs: Any) -> bytes:
        if os.getpid() != parent:
            raise MemoryError  # what a child that runs out of memory meets
        return dumps(*args, **kwargs)

    monkeypatch.setattr(pickle, "dumps", broken)  # the forked children inherit it
    assert _report(corpus, 2) == alone


def test_a_child_that_dies_midway_loses_nothing(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batches a child sent before it died are used; the files it never sent are parsed here."""
    alone = _report(corpus, 1)
    monkeypatch.setattr(spread, "MIN_FILES_PER_WORKER", 20)
    monkeypatch.setattr(spread, "BATCH", 10)
    parse = spread._parse
    seen = [0]

    def dying(file: str, max_bytes: int) -> object:
        seen[0] += 1
        if os.getpid() != parent and seen[0] > 25:  # in the child, after two whole batches
            os._exit(9)
        return parse(file, max_bytes)

    parent = os.getpid()
    monkeypatch.setattr(spread, "_parse", dying)
    received: list[int] = []
    unpack = spread._unpack  # what this process made of each batch the child sent
    monkeypatch.setattr(spread, "_unpack", lambda *a: (lambda b: received.append(len(b or [])) or b)(unpack(*a)))
    assert _report(corpus, 2) == alone
    assert received[:2] == [10, 10]  # two batches came from the child before it died
