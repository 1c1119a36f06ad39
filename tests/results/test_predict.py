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


IRIS_HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"


def _iris_rows(path: Path, rows: int, bad_at: int | None = None) -> Path:
    """A csv of ``rows`` iris feature rows; with ``bad_at``, that row (0-based) holds a word."""
    with (REPO / "examples/data/iris.csv").open() as f:
        source = list(csv.DictReader(f))
    names = IRIS_HEADER.strip().split(",")
    lines = [",".join(source[i % len(source)][n] for n in names) for i in range(rows)]
    if bad_at is not None:
        lines[bad_at] = "5.1,x,1.4,0.2"
    path.write_text(IRIS_HEADER + "".join(line + "\n" for line in lines))
    return path


def _clean_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # The last line says it (libraries may print progress before it).
    last = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(("lmspec: error: ", "Error: ")), result.stderr[-3000:]
    return last


def test_output_that_is_the_input_is_refused(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    """The same file, through a symbolic link or a hard link: refused before anything is read,
    and the input keeps every byte (writing it would truncate it while it is read)."""
    manifests, _ = iris_run
    data = _iris_rows(tmp_path / "rows.csv", 50)
    before = data.read_bytes()
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    for inp, out in [(data, data), (data, tmp_path / "link.csv"), (tmp_path / "link.csv", tmp_path / "hard.csv"),
                     (data, tmp_path / "sub" / ".." / "rows.csv")]:
        result = lmspec("predict", str(manifests), "--input", str(inp), "--output", str(out),
                        "--chunk-rows", "8")
        assert "is the input file" in _clean_failure(result)
        assert data.read_bytes() == before


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_failure_midway_leaves_no_partial_output(tmp_path: Path, iris_run: tuple[Path, Path],
                                                   suffix: str) -> None:
    """A bad row after several chunks were written: the earlier output is untouched, and no
    partial or temporary file is left beside it."""
    manifests, _ = iris_run
    data = _iris_rows(tmp_path / "rows.csv", 60, bad_at=45)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    earlier = out_dir / f"predictions{suffix}"
    earlier.write_bytes(b"earlier predictions\n")
    result = lmspec("predict", str(manifests), "--input", str(data), "--output", str(earlier),
                    "--chunk-rows", "8")
    assert "row 47" in _clean_failure(result)
    assert earlier.read_bytes() == b"earlier predictions\n"
    assert [p.name for p in out_dir.iterdir()] == [earlier.name]
    fresh = out_dir / f"fresh{suffix}"
    _clean_failure(lmspec("predict", str(manifests), "--input", str(data), "--output", str(fresh),
                          "--chunk-rows", "8"))
    assert [p.name for p in out_dir.iterdir()] == [earlier.name]


def test_unwritable_outputs_are_clear_errors(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    manifests, run_dir = iris_run
    data = _iris_rows(tmp_path / "rows.csv", 5)
    (tmp_path / "taken.csv").mkdir()
    for out in ["/proc/self/predictions.csv", str(tmp_path / "rows.csv" / "predictions.csv"),
                str(tmp_path / "taken.csv")]:
        stderr = _clean_failure(lmspec("predict", str(manifests), "--input", str(data), "--output", out))
        assert out in stderr or "directory" in stderr, stderr
    from lmspec.predict import PredictError, predict_file

    with pytest.raises(PredictError, match="is a directory"):
        predict_file(run_dir / "export", data, tmp_path / "taken.csv", progress=False)


def test_header_only_input_gives_a_valid_empty_output(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    import pyarrow.parquet as pq

    manifests, _ = iris_run
    data = tmp_path / "empty.csv"
    data.write_text(IRIS_HEADER)
    columns = ["prediction", "probability_setosa", "probability_versicolor", "probability_virginica"]
    for name in ("out.csv", "out.jsonl", "out.parquet"):
        result = lmspec("predict", str(manifests), "--input", str(data), "--output", str(tmp_path / name))
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"0 rows from {data} → {tmp_path / name}" in result.stderr
    assert (tmp_path / "out.csv").read_text().splitlines() == [",".join(columns)]
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.column_names == columns


def _hostile_inputs(directory: Path) -> list[tuple[Path, list[str]]]:
    """Files that once made ``lmspec predict`` fail with a traceback (or accept a bad value),
    each with the words its one-line error must hold."""
    good = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    files: list[tuple[Path, list[str]]] = []

    def add(name: str, content: str | bytes, words: list[str]) -> None:
        path = directory / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        files.append((path, [name, *words]))

    add("deep.jsonl", json.dumps(good) + "\n" + '{"sepal_length": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
        ["line 2", "nested too deeply"])
    add("huge.jsonl", json.dumps(good).replace("5.1", "9" * 400) + "\n",
        ["line 1", "'sepal_length'", "not a finite number"])
    add("digits.jsonl", json.dumps(good).replace("5.1", "9" * 5000) + "\n", ["line 1", "too many digits"])
    add("huge.csv", IRIS_HEADER + "9" * 400 + ",3.5,1.4,0.2\n", ["row 2", "'sepal_length'", "not a finite number"])
    add("nul.csv", IRIS_HEADER + "5.1,3.5\x00,1.4,0.2\n", ["row 2", "'sepal_width'", "not a number"])
    add("nul.jsonl", json.dumps({**good, "sepal_width": "3.5\x00"}) + "\n", ["line 1", "'sepal_width'", "not a number"])
    add("corrupt.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1", ["cannot read parquet"])
    return files


def test_hostile_inputs_are_located_errors(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    manifests, _ = iris_run
    for path, words in _hostile_inputs(tmp_path):
        stderr = _clean_failure(lmspec("predict", str(manifests), "--input", str(path)))
        assert all(w in stderr for w in words), (path.name, stderr)
        assert "9" * 30 not in stderr  # a value is quoted in a short excerpt at most


def test_credential_looking_values_are_not_echoed(tmp_path: Path, iris_run: tuple[Path, Path]) -> None:
    manifests, _ = iris_run
    secret = "aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"
    data = tmp_path / "leaked.csv"
    data.write_text(IRIS_HEADER + f"5.1,3.5,1.4,{secret}\n")
    stderr = _clean_failure(lmspec("predict", str(manifests), "--input", str(data)))
    assert "row 2" in stderr and "'petal_width'" in stderr and "not a number" in stderr
    assert "wJalr" not in stderr and "aws_secret" not in stderr


def test_language_model_prompt_that_is_not_unicode(tmp_path: Path, lm_run: tuple[Path, Path]) -> None:
    """JSON can carry a lone surrogate, which no tokenizer takes: the row is named, no traceback."""
    manifests, _ = lm_run
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"text": "Copyright"}\n{"text": "ab\\ud800cd"}\n')
    stderr = _clean_failure(lmspec("predict", str(manifests), "--input", str(data), "--max-tokens", "2"))
    assert "prompts.jsonl, line 2, column 'text'" in stderr and "not valid Unicode" in stderr, stderr
