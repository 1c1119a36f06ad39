"""``lmspec report``: the HTML of real runs renders in headless Chromium, and every plotted number
is the one in ``metrics.jsonl`` (or recomputed from the exported model)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import assert_not_blank, render
from results_helpers import lmspec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("matplotlib", reason="lmspec report needs matplotlib (the report extra)")


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _embedded(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="lmspec-report-data">(.*?)</script>', html, re.S)
    assert m is not None
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def _report(tmp_path: Path, *run_dirs: Path, cli: bool = False) -> tuple[Path, str, dict[str, Any]]:
    """The report, written by the command (``cli``) or in this process (faster: torch and
    matplotlib are imported once)."""
    from lmspec.report import build_report

    out = tmp_path / "report.html"
    if cli:
        result = lmspec("report", *map(str, run_dirs), "-o", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        build_report(list(run_dirs), out)
    html = out.read_text()
    return out, html, _embedded(html)


def _check_curves(figures: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Each plotted line is the records' (step, value) sequence, in file order."""
    checked = 0
    for fig in figures.values():
        for line in fig.get("series", {}).values():
            rows = [r for r in records if r["split"] == line["split"] and line["key"] in r]
            assert line["x"] == [r["step"] for r in rows]
            assert line["y"] == [r[line["key"]] for r in rows]
            checked += 1
    assert checked >= 4


def _self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html), "the report loads something"
    assert "http://" not in html.split("<main>")[0] and "https://" not in html.split("<main>")[0]


def _browser_check(tmp_path: Path, out: Path) -> None:
    console = render(out, tmp_path / "shot.png")
    assert console == [], console
    assert_not_blank(tmp_path / "shot.png")


def test_classifier_report(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    _, run_dir = iris_run
    out, html, data = _report(tmp_path, run_dir, cli=True)
    records = _records(run_dir)
    figures = data["figures"]
    assert {"loss", "metric-accuracy", "lr", "throughput", "confusion"} <= set(figures)
    _check_curves(figures, records)
    # Checkpoints, the resume and the early stop are marked where metrics.jsonl has them.
    events = figures["loss"]["events"]
    for name in ("checkpoint", "resume", "earlyStop"):
        assert events[name] == [r["step"] for r in records if r.get("event") == name], name
    assert events["resume"] and events["earlyStop"]
    # The confusion matrix is the exported model's on the test split: its accuracy is the run's.
    summary = json.loads((run_dir / "summary.json").read_text())
    matrix = np.array(figures["confusion"]["matrix"])
    assert np.trace(matrix) / matrix.sum() == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
    for k, row in enumerate(figures["confusion"]["perClass"]):
        assert row["support"] == matrix[k].sum()
        assert row["recall"] == pytest.approx(matrix[k, k] / matrix[k].sum())
    assert "dataFingerprint" in html and "rendered.yaml" in html
    _self_contained(html)
    _browser_check(tmp_path, out)


def test_regression_report(tmp_path: Path, regression_run: tuple[Path, Path]) -> None:
    _, run_dir = regression_run
    out, html, data = _report(tmp_path, run_dir)
    figures = data["figures"]
    _check_curves(figures, _records(run_dir))
    true = np.array(figures["predicted-vs-true"]["true"])
    pred = np.array(figures["predicted-vs-true"]["predicted"])
    np.testing.assert_allclose(figures["residuals"]["residual"], pred - true)
    # In the target's own units (the model learns standardised ones): diabetes progression is 25-346.
    assert true.min() > 20 and true.max() < 350
    # The run's test mse is in the model's units; the plotted errors, rescaled, agree with it.
    from lmspec.model.export import load_exported

    scale = load_exported(run_dir / "export").transform.target_ops[0]["scale"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.mean(((pred - true) * scale) ** 2) == pytest.approx(summary["test"]["mse"], rel=1e-4)
    _self_contained(html)
    _browser_check(tmp_path, out)


def test_comparison_report(tmp_path: Path, iris_run: tuple[Path, Path],
                           regression_run: tuple[Path, Path]) -> None:
    runs = [iris_run[1], regression_run[1]]
    out, html, data = _report(tmp_path, *runs)
    assert [r["label"] for r in data["runs"]] == ["iris-train", "diabetes-train"]
    overlay = data["figures"]["compare-train-loss"]["series"]
    for run_dir, label in zip(runs, ["iris-train", "diabetes-train"], strict=True):
        rows = [r for r in _records(run_dir) if r["split"] == "train"]
        assert overlay[label]["y"] == [r["loss"] for r in rows]
        test = json.loads((run_dir / "summary.json").read_text())["test"]
        for k, v in test.items():
            assert data["finalMetrics"][label][f"test.{k}"] == v
    assert "trainingjob.loss.type" in data["differingFields"]
    assert "trainingjob.optimizer.lr" in data["differingFields"]
    assert "trainingjob.zero.stage" not in data["differingFields"]  # both stage 0
    _self_contained(html)
    _browser_check(tmp_path, out)


def test_browser_check_sees_a_blocked_load(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    """The console check is not vacuous: a report that tried to load an image from the network
    gets a console error (the page's Content-Security-Policy blocks it)."""
    _, html, _ = _report(tmp_path, iris_run[1])
    bad = tmp_path / "bad.html"
    bad.write_text(html.replace("<main>", '<main><img src="http://127.0.0.1:9/x.png">', 1))
    console = render(bad, tmp_path / "bad.png")
    assert any("Content Security Policy" in line for line in console), console


def test_not_a_run_directory(tmp_path: Path) -> None:
    result = lmspec("report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 1
    assert "has no metrics.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_language_model_report(tmp_path: Path, lm_run: tuple[Path, Path]) -> None:
    _, run_dir = lm_run
    out, html, data = _report(tmp_path, run_dir)
    figures = data["figures"]
    _check_curves(figures, _records(run_dir))
    assert "metric-perplexity" in figures
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['test']['perplexity']:.6g}" in html
    # Three held-out prompts and the exported model's greedy continuations, as `lmspec predict`
    # gives them for the same prompts.
    cells = re.findall(r'<td class="text">(.*?)</td>', html, re.S)
    assert len(cells) == 6
    import html as html_lib

    from lmspec.model.export import load_exported
    from lmspec.predict import generate
    from lmspec.report.runs import SAMPLE_TOKENS

    prompts = [html_lib.unescape(c) for c in cells[0::2]]
    expected = generate(load_exported(run_dir / "export"), prompts, max_tokens=SAMPLE_TOKENS)
    assert [html_lib.unescape(c) for c in cells[1::2]] == expected
    _self_contained(html)
    _browser_check(tmp_path, out)
