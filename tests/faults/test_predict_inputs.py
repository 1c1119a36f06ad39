"""``lmspec predict`` (and ``lmspec evaluate``) on hostile input files and odd output paths, in
process, on real exports (built with ``save_export``, no run): each failure is one line naming
the file, the row or line, the column and the rule broken, with exit status 1 (the commands'
status for a user's mistake) and no traceback, and it loses nothing — an earlier output stays as
it was, no partial or temporary file is left, and the input is never written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from serve_fixtures import LM_MODEL, iris_export, service_manifest

from lmspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"
GOOD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SECRET = "aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An InferenceService manifest serving a briefly trained iris export."""
    root = tmp_path_factory.mktemp("iris")
    return Path(service_manifest(root / "service", "iris", iris_export(root / "export", steps=20)))


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An InferenceService manifest serving a tiny byte-level language model that reads the
    ``text`` column, as a run's export does."""
    import torch

    from lmspec.data import Tokenizer, Transform
    from lmspec.model.build import build_model
    from lmspec.model.export import save_export
    from lmspec.v1alpha1 import Model

    root = tmp_path_factory.mktemp("lm")
    doc = {**LM_MODEL, "spec": {**LM_MODEL["spec"], "architecture": {
        **LM_MODEL["spec"]["architecture"], "contextLength": 32}}}
    manifest = Model.model_validate(doc)
    torch.manual_seed(0)
    transform = Transform(task="causal-lm", feature_names=["text"], feature_dtypes=["string"],
                          tokenizer=Tokenizer.byte())
    export = save_export(root / "export", manifest, build_model(manifest.spec).state_dict(),
                         transform.state_dict(), job="tiny-lm", metrics={})
    return Path(service_manifest(root / "service", "lm", export))


def predict(manifest: Path, *args: str | Path) -> Result:
    return CliRunner().invoke(main, ["predict", str(manifest), *map(str, args)])


def failure(result: Result) -> str:
    """The one line a failure prints (after checking there is nothing else to it)."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output, result.output
    last = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(("lmspec: error: ", "Error: ")), result.stderr
    return last


def _write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _jsonl(*records: dict[str, Any] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


HOSTILE: dict[str, tuple[str | bytes, list[str]]] = {
    "deep.jsonl": (_jsonl(GOOD, '{"sepal_length": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                   ["line 2", "nested too deeply"]),
    "deep-object.jsonl": (_jsonl('{"a": ' * 100_000 + "1" + "}" * 100_000), ["line 1", "nested too deeply"]),
    "huge.jsonl": (_jsonl({**GOOD, "sepal_length": 10**400}), ["line 1", "'sepal_length'", "not a finite number"]),
    "digits.jsonl": (_jsonl(json.dumps(GOOD).replace("5.1", "9" * 5000)), ["line 1", "too many digits"]),
    "huge.csv": (HEADER + "9" * 400 + ",3.5,1.4,0.2\n", ["row 2", "'sepal_length'", "not a finite number"]),
    "nul.csv": (HEADER + "5.1,3.5\x00,1.4,0.2\n", ["row 2", "'sepal_width'", "U+0000"]),
    "unit-separator.csv": (HEADER + "5.1,3.5,1.4\x1f,0.2\n", ["row 2", "'petal_length'", "U+001F"]),
    "line-break.csv": (HEADER + '5.1,3.5,1.4,"0.2\n"\n', ["row 2", "'petal_width'", "U+000A"]),
    "vertical-tab.jsonl": (_jsonl({**GOOD, "sepal_width": "\x0b3.5"}), ["line 1", "'sepal_width'", "U+000B"]),
    "corrupt.parquet": (b"PAR1" + b"\x00" * 64 + b"PAR1", ["cannot read parquet"]),
    "not-utf8.csv": (HEADER.encode() + b"5.1,3.5,\xff,0.2\n", ["not UTF-8"]),
    "ragged.csv": (HEADER + "5.1,3.5,1.4,0.2\n5.1,3.5\n", ["row 3", "has 2 fields; the header has 4"]),
    "list.jsonl": (_jsonl(GOOD, "[1, 2]"), ["line 2", "expected a JSON object"]),
    "secret-value.csv": (HEADER + f"5.1,3.5,1.4,{SECRET}\n", ["row 2", "'petal_width'", "looks like a credential"]),
    "secret-header.csv": (f"{SECRET},sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n",
                          ["'sepal_length' is not in the data", "looks like a credential"]),
    "long-header.csv": (",".join(f"c{'x' * 60}{i}" for i in range(100)) + "\n", ["(100 in all)"]),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_is_one_located_line_and_loses_nothing(tmp_path: Path, iris: Path, name: str) -> None:
    content, words = HOSTILE[name]
    data = _write(tmp_path, name, content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    earlier = out_dir / "predictions.csv"
    earlier.write_bytes(b"earlier predictions\n")
    result = predict(iris, "--input", data, "--output", earlier, "--chunk-rows", "1")
    line = failure(result)
    assert result.stderr == line + "\n", result.stderr  # one line, nothing before it
    assert all(w in line for w in [name, *words]), line
    assert "9" * 30 not in line and "wJalr" not in line and "x" * 40 not in line  # excerpts at most
    assert len(line) < 1000, line
    assert earlier.read_bytes() == b"earlier predictions\n"
    assert [p.name for p in out_dir.iterdir()] == [earlier.name]
    assert data.read_bytes() == (content.encode() if isinstance(content, str) else content)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_failure_after_the_first_chunk_leaves_no_partial_output(tmp_path: Path, iris: Path,
                                                                  suffix: str) -> None:
    """Two chunks predicted and written, the third holds a bad row: the earlier output is
    untouched and nothing else is left beside it (the output is a temporary file until the end)."""
    rows = [",".join(str(v) for v in GOOD.values())] * 20
    rows[17] = "5.1,3.5,1.4,x"
    data = _write(tmp_path, "rows.csv", HEADER + "".join(r + "\n" for r in rows))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    earlier = out_dir / f"predictions{suffix}"
    earlier.write_bytes(b"earlier predictions\n")
    for output in (earlier, out_dir / f"fresh{suffix}"):
        line = failure(predict(iris, "--input", data, "--output", output, "--chunk-rows", "8"))
        assert "rows.csv, row 19, column 'petal_width'" in line, line
        assert earlier.read_bytes() == b"earlier predictions\n"
        assert [p.name for p in out_dir.iterdir()] == [earlier.name]
    rows[17] = rows[0]
    data.write_text(HEADER + "".join(r + "\n" for r in rows))
    result = predict(iris, "--input", data, "--output", earlier, "--chunk-rows", "8")
    assert result.exit_code == 0, result.output
    assert earlier.read_bytes() != b"earlier predictions\n"
    assert [p.name for p in out_dir.iterdir()] == [earlier.name]


def test_an_output_that_is_the_input_is_refused(tmp_path: Path, iris: Path) -> None:
    """Also through a symbolic link, a hard link or a detour: refused before anything is read,
    and the input keeps every byte."""
    data = _write(tmp_path, "rows.csv", HEADER + "5.1,3.5,1.4,0.2\n" * 30)
    before = data.read_bytes()
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    (tmp_path / "sub").mkdir()
    for inp, out in [(data, data), (data, tmp_path / "link.csv"), (tmp_path / "link.csv", tmp_path / "hard.csv"),
                     (data, tmp_path / "sub" / ".." / "rows.csv")]:
        line = failure(predict(iris, "--input", inp, "--output", out, "--chunk-rows", "8"))
        assert "is the input file" in line, line
        assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.csv", "link.csv", "rows.csv", "sub"]


def test_odd_outputs_are_clear_errors(tmp_path: Path, iris: Path) -> None:
    data = _write(tmp_path, "rows.csv", HEADER + "5.1,3.5,1.4,0.2\n")
    (tmp_path / "taken.csv").mkdir()
    cases = {"/proc/self/predictions.csv": "/proc/self/predictions.csv",
             "/proc/self/status.csv": "/proc/self/status.csv",
             "/dev/null": "use a .csv, .jsonl or .parquet file name",
             str(tmp_path / "rows.csv" / "out.csv"): "out.csv",
             str(tmp_path / "taken.csv"): "is a directory",
             str(tmp_path / "out.txt"): "use a .csv, .jsonl or .parquet file name"}
    for out, words in cases.items():
        line = failure(predict(iris, "--input", data, "--output", out))
        assert words in line, line
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_an_input_without_rows_gives_a_valid_empty_output(tmp_path: Path, iris: Path, suffix: str) -> None:
    """A header-only csv, an empty jsonl file, an empty parquet table: each output format holds
    what an empty result is in it (a header, nothing, a schema), as the line says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(GOOD)
    inputs = [_write(tmp_path, "empty.csv", HEADER), _write(tmp_path, "empty.jsonl", "")]
    pq.write_table(pa.table({n: pa.array([], pa.float64()) for n in names}), tmp_path / "empty.parquet")
    inputs.append(tmp_path / "empty.parquet")
    columns = ["prediction", "probability_setosa", "probability_versicolor", "probability_virginica"]
    for data in inputs:
        out = tmp_path / f"out-{data.suffix[1:]}{suffix}"
        result = predict(iris, "--input", data, "--output", out)
        assert result.exit_code == 0, result.output
        assert f"0 rows from {data} → {out}" in result.stderr
        if suffix == ".csv":
            assert out.read_text().splitlines() == [",".join(columns)]
        elif suffix == ".jsonl":
            assert out.read_bytes() == b""
        else:
            table = pq.read_table(out)
            assert table.num_rows == 0 and table.column_names == columns


def test_language_model_prompt_that_is_not_unicode(tmp_path: Path, lm: Path) -> None:
    """JSON can carry a lone surrogate, which no tokenizer takes: the line is named."""
    data = _write(tmp_path, "prompts.jsonl", '{"text": "Copyright"}\n{"text": "ab\\ud800cd"}\n')
    out = tmp_path / "out.jsonl"
    line = failure(predict(lm, "--input", data, "--output", out, "--max-tokens", "2"))
    assert "prompts.jsonl, line 2, column 'text'" in line and "not valid Unicode" in line, line
    assert not out.exists()
    data.write_text('{"text": "Copyright"}\n{"text": "ab\\u00e9cd"}\n')
    result = predict(lm, "--input", data, "--output", out, "--max-tokens", "2")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 2


@pytest.fixture(scope="module")
def iris_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris example's manifests (Dataset, Model, TrainingJob) with an export where the
    TrainingJob's output directory holds it, for ``lmspec evaluate``."""
    import yaml

    root = tmp_path_factory.mktemp("iris-job")
    for f in sorted((ROOT / "examples" / "iris").glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        if doc["kind"] == "Dataset":
            doc["spec"]["sources"] = [{"path": str(ROOT / "examples" / "data" / "iris.csv")}]
        if doc["kind"] == "TrainingJob":
            doc["spec"]["output"] = {"dir": str(root / "run")}
        if doc["kind"] != "InferenceService":
            (root / f.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    iris_export(root / "run" / "export", steps=20)
    return root


@pytest.mark.parametrize("name", ["deep.jsonl", "huge.csv", "unit-separator.csv", "corrupt.parquet",
                                  "secret-header.csv"])
def test_evaluate_on_hostile_input_is_one_located_line(tmp_path: Path, iris_job: Path, name: str) -> None:
    content, words = HOSTILE[name]
    if name.endswith(".csv"):  # with the target column evaluation needs
        lines = content.split("\n") if isinstance(content, str) else []
        content = "\n".join(f"{line},species" if k == 0 else f"{line},setosa" if line else ""
                            for k, line in enumerate(lines))
    data = _write(tmp_path, name, content)
    result = CliRunner().invoke(main, ["evaluate", str(iris_job), "--input", str(data)])
    line = failure(result)
    assert all(w in line for w in [name, *words]), line


def test_evaluate_to_an_unwritable_json_path_is_one_line(tmp_path: Path, iris_job: Path) -> None:
    data = _write(tmp_path, "rows.csv", HEADER.strip() + ",species\n5.1,3.5,1.4,0.2,setosa\n")
    result = CliRunner().invoke(main, ["evaluate", str(iris_job), "--input", str(data),
                                       "--json", "/proc/self/metrics.json"])
    assert "cannot write /proc/self/metrics.json" in failure(result)
