"""``lmspec predict`` and ``lmspec evaluate`` on real runs: predictions equal what a real
``lmspec serve`` answers for the same rows, every file format gives the same result, and the
evaluation reproduces the run's own test metrics."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from results_helpers import REPO, lmspec

pytestmark = pytest.mark.integration

CHUNK = 16


def _raw_csv(source: Path, out: Path, rows: int, drop: str) -> list[dict[str, str]]:
    """The first ``rows`` rows of an example's data: target dropped, an id column added and
    the columns reversed, as a user's file would differ from the training file."""
    with source.open() as f:
        records = list(csv.DictReader(f))[:rows]
    keep = [c for c in reversed(list(records[0])) if c != drop]
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", *keep])
        w.writeheader()
        for i, r in enumerate(records):
            w.writerow({"id": f"r{i}", **{c: r[c] for c in keep}})
    return records


class Served:
    """A real ``lmspec serve`` of a run's export on a free loopback port, batching off."""

    def __init__(self, directory: Path, export: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
               "spec": {"model": {"path": str(export)}, "batching": {"enabled": False}}}
        manifest = directory / "service.yaml"
        manifest.write_text(yaml.safe_dump(doc))
        self.log = directory / "server.log"
        self.name = name
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", str(manifest), "--port", "0"],
                                         stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + 120
        self.url = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"listening on (http://\S+)", self.log.read_text())
            if found:
                self.url = found.group(1)
                try:
                    if httpx.get(self.url + "/v2/health/ready", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def infer(self, features: np.ndarray) -> np.ndarray:
        body = {"inputs": [{"name": "features", "shape": list(features.shape), "datatype": "FP32",
                            "data": features.reshape(-1).tolist()}]}
        r = httpx.post(f"{self.url}/v2/models/{self.name}/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for s in servers:
        s.stop()


def _predict(manifests: Path, data: Path, out: Path) -> list[dict[str, Any]]:
    result = lmspec("predict", str(manifests), "--input", str(data), "--output", str(out),
                    "--chunk-rows", str(CHUNK))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.slow
def test_classifier_predictions_are_the_served_ones(tmp_path: Path, iris_run: tuple[Path, Path],
                                                    served: list[Served]) -> None:
    manifests, run_dir = iris_run
    rows = _raw_csv(REPO / "examples/data/iris.csv", tmp_path / "new.csv", 40, drop="species")
    got = _predict(manifests, tmp_path / "new.csv", tmp_path / "out.jsonl")
    assert len(got) == 40
    server = Served(tmp_path / "serve", run_dir / "export", "iris")
    served.append(server)
    classes = ["setosa", "versicolor", "virginica"]
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    for start in range(0, 40, CHUNK):  # the same chunks predict read, one request each
        part = rows[start:start + CHUNK]
        x = np.array([[float(r[n]) for n in names] for r in part], dtype=np.float32)
        logits = server.infer(x).astype(np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for k, record in enumerate(got[start:start + CHUNK]):
            assert record["prediction"] == classes[int(np.argmax(logits[k]))]
            probs = [record[f"probability_{c}"] for c in classes]
            np.testing.assert_allclose(probs, p[k], rtol=1e-12, atol=0)
    assert sum(r["prediction"] == row["species"] for r, row in zip(got, rows, strict=True)) >= 30


@pytest.mark.slow
def test_regression_predictions_are_the_served_ones(tmp_path: Path, regression_run: tuple[Path, Path],
                                                    served: list[Served]) -> None:
    manifests, run_dir = regression_run
    rows = _raw_csv(REPO / "examples/data/diabetes.csv", tmp_path / "new.csv", 50, drop="progression")
    got = _predict(manifests, tmp_path / "new.csv", tmp_path / "out.jsonl")
    server = Served(tmp_path / "serve", run_dir / "export", "diabetes")
    served.append(server)
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    for start in range(0, 50, CHUNK):
        x = np.array([[float(r[n]) for n in names] for r in rows[start:start + CHUNK]], dtype=np.float32)
        expected = server.infer(x).reshape(-1)
        assert [r["prediction"] for r in got[start:start + CHUNK]] == expected.tolist()  # exactly


def test_formats_agree(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    """csv, jsonl and parquet in; jsonl, csv and parquet out: the same predictions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmspec.predict import predict_file

    _, run_dir = iris_run
    export = run_dir / "export"
    rows = _raw_csv(REPO / "examples/data/iris.csv", tmp_path / "in.csv", 30, drop="species")
    features = [{k: float(v) for k, v in r.items() if k != "species"} for r in rows]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in features))
    pq.write_table(pa.Table.from_pylist(features), tmp_path / "in.parquet")
    assert predict_file(export, tmp_path / "in.csv", tmp_path / "a.jsonl", chunk_rows=7, progress=False) == 30
    reference = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    predict_file(export, tmp_path / "in.jsonl", tmp_path / "b.csv", chunk_rows=30, progress=False)
    predict_file(export, tmp_path / "in.parquet", tmp_path / "c.parquet", chunk_rows=4, progress=False)
    with (tmp_path / "b.csv").open() as f:
        from_csv = [{k: v if k == "prediction" else float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    from_parquet = pq.read_table(tmp_path / "c.parquet").to_pylist()
    for other in (from_csv, from_parquet):
        assert [r["prediction"] for r in other] == [r["prediction"] for r in reference]
        for a, b in zip(other, reference, strict=True):
            assert a.keys() == b.keys()
            # Row-wise results may differ in the last bits between batch sizes (7, 30, 4 rows).
            assert [a[k] for k in a if k != "prediction"] == pytest.approx(
                [b[k] for k in b if k != "prediction"], rel=1e-6, abs=1e-7)


def test_predict_errors_name_file_row_and_column(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    manifests, _ = iris_run
    bad = tmp_path / "bad.csv"
    bad.write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n4.9,x,1.4,0.2\n")
    result = lmspec("predict", str(manifests), "--input", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad.csv" in result.stderr and "row 3" in result.stderr and "sepal_width" in result.stderr
    missing = tmp_path / "missing.csv"
    missing.write_text("sepal_length,sepal_widht,petal_length,petal_width\n5.1,3.5,1.4,0.2\n")
    result = lmspec("predict", str(manifests), "--input", str(missing))
    assert result.returncode == 1 and "'sepal_width' is not in the data" in result.stderr
    assert "did you mean 'sepal_widht'" in result.stderr


def test_evaluate_reproduces_the_test_metrics(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    manifests, run_dir = iris_run
    result = lmspec("evaluate", str(manifests), "--split", "test", "--json", "-")
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert got["metrics"] == pytest.approx(summary["test"], rel=1e-6)
    # A new file with the target: accuracy agrees with what `lmspec predict` says of the rows.
    from lmspec.evaluate import evaluate
    from lmspec.predict import predict_file, resolve

    rows = _raw_csv(REPO / "examples/data/iris.csv", tmp_path / "x.csv", 150, drop="")
    target = resolve([str(manifests)], job=None, service=None)
    evaluated = evaluate(target, input_path=tmp_path / "x.csv")
    predict_file(target.export, tmp_path / "x.csv", tmp_path / "p.jsonl", progress=False)
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    hits = sum(p["prediction"] == r["species"] for p, r in zip(predicted, rows, strict=True))
    assert evaluated.rows == 150
    assert evaluated.metrics["accuracy"] == pytest.approx(hits / 150)


def test_language_model_evaluate_and_predict(tmp_path: Path, lm_run: tuple[Path, Path]) -> None:
    from lmspec.evaluate import evaluate
    from lmspec.predict import predict_file, resolve

    manifests, run_dir = lm_run
    target = resolve([str(manifests)], job=None, service=None)
    got = evaluate(target, split="test")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert got.metrics == pytest.approx(summary["test"], rel=1e-6)
    # A new text file: the same metrics as training computes them, on windows packed the same way.
    text = (REPO / "examples/data/licenses/BSD.txt").read_text()
    (tmp_path / "new.jsonl").write_text(json.dumps({"text": text}) + "\n")
    on_file = evaluate(target, input_path=tmp_path / "new.jsonl")
    assert on_file.rows == (len(text.encode()) - 1) // 32
    assert on_file.metrics["perplexity"] == pytest.approx(np.exp(on_file.metrics["loss"]))
    (tmp_path / "prompts.csv").write_text('text\n"Copyright (c) "\nRedistribution\n')
    predict_file(target.export, tmp_path / "prompts.csv", tmp_path / "out.jsonl", max_tokens=5, progress=False)
    generated = [json.loads(line)["generated"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(generated) == 2 and all(0 < len(g) <= 5 for g in generated)  # a byte a token
