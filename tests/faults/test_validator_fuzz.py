"""A seeded fuzz run of the validator: the example manifests with random leaves replaced by
hostile values, random keys added and documents cut short. Every input must give a report
(exit 0, 1 or 2 from the CLI), never an exception, in bounded time.

``LMSPEC_FUZZ_CASES`` sets the number of inputs: a few thousand by default, 20,000 or more for a
nightly run; ``LMSPEC_FUZZ_SEED`` the seed."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CASES = int(os.environ.get("LMSPEC_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("LMSPEC_FUZZ_SEED", "20260601"))

HOSTILE: list[Any] = [
    0, -1, 1, 2**63, -(2**63) - 1, int("9" * 400), 1e300, -1e300, 5e-324, float("inf"), float("-inf"),
    float("nan"), "", "abc", "\u00e9\u4e2d", "1" * 400 + "GiB", "{0}",
    "{name.__class__}", "/**/*.x", "../../../etc/passwd", None, True, [], [1], {}, {"a": 1},
    "x" * 5000, [None] * 50,
]


def _examples() -> list[dict[str, Any]]:
    docs = []
    # Each example's own manifests, never what running one leaves below it (runs/<job>/).
    for path in sorted((REPO / "examples").glob("*/*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def mutate(rng: random.Random, docs: list[dict[str, Any]]) -> str:
    picked = [copy.deepcopy(rng.choice(docs)) for _ in range(rng.randint(1, 3))]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(picked))
        path = rng.choice(_leaves(picked[i]))
        if rng.random() < 0.2 and path:
            value: Any = {rng.choice(["x-a", "bogus", "spec"]): copy.deepcopy(rng.choice(HOSTILE))}
        else:
            value = copy.deepcopy(rng.choice(HOSTILE))
        picked[i] = _set(picked[i], path, value)
    text = yaml.safe_dump_all(picked, sort_keys=False, allow_unicode=True)
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    return text


def test_validator_fuzz_gives_reports_never_exceptions(tmp_path: Path) -> None:
    import lmspec

    rng = random.Random(SEED)
    docs = _examples()
    worst = 0.0
    for case in range(CASES):
        text = mutate(rng, docs)
        started = time.perf_counter()
        try:
            report = lmspec.validate("-", stdin_text=text)
        except Exception as exc:  # the point of the test: a crash is reported with its input
            raise AssertionError(f"case {case} (seed {SEED}) raised {exc!r} on:\n{text[:3000]}") from exc
        worst = max(worst, time.perf_counter() - started)
        assert report is not None
    assert worst < 10, f"slowest input took {worst:.1f} s"


@pytest.mark.integration
def test_validator_fuzz_through_the_cli_exits_0_1_or_2(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    docs = _examples()
    for case in range(5):
        path = tmp_path / f"case{case}.yaml"
        path.write_text(mutate(rng, docs))
        out = subprocess.run([sys.executable, "-m", "lmspec", "validate", str(path)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode in (0, 1, 2), out.stderr
        assert "Traceback" not in out.stdout + out.stderr, path.read_text()[:3000]
