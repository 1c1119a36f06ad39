"""Files parsed in forked processes (``lmspec validate`` over many files) give exactly the report
one process gives: the same findings, at the same positions, in the same order. A child that
fails costs time, never a result: its files are parsed again here."""

from __future__ import annotations

import os
import pickle
import time
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
    monkeypatch.setattr(spread, "BATCH", 10)
    spawned: list[int] = []
    fork = spread._fork
    monkeypatch.setattr(spread, "_fork", lambda *a: spawned.append(len(a[0])) or fork(*a))
    received: list[int] = []
    unpack = spread._unpack  # what this process made of each chunk a child sent
    monkeypatch.setattr(spread, "_unpack", lambda *a: (lambda b: received.append(len(b or [])) or b)(unpack(*a)))
    parsed_here = _count_parsed_here(monkeypatch)
    assert _report(corpus, 3) == alone
    # The work really was shared: two children beside this process, each file parsed once, in
    # one process or another (none again here after a failure).
    files = len(list(corpus.rglob("*.yaml")))
    assert len(spawned) == 2 and sum(received) > 0
    assert sum(received) + parsed_here[0] == files
    assert '"line"' in alone and '"schema.unknown-key"' in alone  # positions and findings compared


def test_the_chunks_go_to_whoever_is_free(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow process (here this one, as if the next layer were slow) takes fewer chunks; the
    children take the rest, so nobody waits while work is left."""
    monkeypatch.setattr(spread, "MIN_FILES_PER_WORKER", 20)
    monkeypatch.setattr(spread, "BATCH", 10)
    parent, parse = os.getpid(), spread._parse

    def slow_here(file: str, max_bytes: int) -> object:
        if os.getpid() == parent:
            time.sleep(0.02)
        return parse(file, max_bytes)

    monkeypatch.setattr(spread, "_parse", slow_here)
    received: list[int] = []
    unpack = spread._unpack
    monkeypatch.setattr(spread, "_unpack", lambda *a: (lambda b: received.append(len(b or [])) or b)(unpack(*a)))
    files = sorted(str(f) for f in corpus.rglob("*.yaml"))
    results = spread.parse_files(files, max_bytes=1 << 20, workers=2)
    assert [_plain(r) for r in results] == [_plain(parse(f, 1 << 20)) for f in files]
    # At 20 ms a file here, this process parses a chunk (200 ms) while the child parses many: far
    # fewer files here than any fixed share would leave it (a third, before chunks were shared).
    assert sum(received) > len(files) * 3 // 4


def _plain(result: object) -> object:
    if isinstance(result, spread.ParseError):
        return (result.rule, result.message, result.file, result.line, result.column)
    assert isinstance(result, list)
    return [(d.file, d.index, d.data) for d in result]


def _count_parsed_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count, parent, parse = [0], os.getpid(), spread._parse

    def counting(file: str, max_bytes: int) -> object:
        if os.getpid() == parent:
            count[0] += 1
        return parse(file, max_bytes)

    monkeypatch.setattr(spread, "_parse", counting)
    return count


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


@pytest.mark.integration
def test_a_child_that_dies_midway_loses_nothing(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks a child sent before it died are used; those it took and never sent are parsed here."""
    alone = _report(corpus, 1)
    monkeypatch.setattr(spread, "MIN_FILES_PER_WORKER", 20)
    monkeypatch.setattr(spread, "BATCH", 10)
    parse = spread._parse
    seen = [0]

    def dying(file: str, max_bytes: int) -> object:
        seen[0] += 1
        if os.getpid() != parent and seen[0] > 25:  # in the child, after two whole chunks
            os._exit(9)
        if os.getpid() == parent:
            time.sleep(0.005)  # so that the child, not this process, takes the first chunks
        return parse(file, max_bytes)

    parent = os.getpid()
    monkeypatch.setattr(spread, "_parse", dying)
    received: list[int] = []
    unpack = spread._unpack  # what this process made of each chunk the child sent
    monkeypatch.setattr(spread, "_unpack", lambda *a: (lambda b: received.append(len(b or [])) or b)(unpack(*a)))
    assert _report(corpus, 2) == alone
    assert received[:2] == [10, 10]  # two chunks came from the child before it died
