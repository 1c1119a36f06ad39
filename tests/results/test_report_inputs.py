"""``lmspec report`` on run directories that are damaged or hostile: every value from the
directory is escaped in the page, and a malformed file gives a report with a note saying what
was left out (or, for a ``metrics.jsonl`` that is no metrics file at all, one line naming it),
never a traceback, alone or in a comparison."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from results_helpers import lmspec

pytest.importorskip("matplotlib", reason="lmspec report needs matplotlib (the report extra)")

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


def _run_dir(path: Path, *, records: list[Any] | None = None, summary: Any = None,
             rendered: str | None = None) -> Path:
    """A run directory as `lmspec run` leaves it (without an export), parts replaced."""
    path.mkdir(parents=True)
    if records is None:
        records = [{"split": "train", "step": s, "epoch": 0, "loss": 1.0 / s, "lr": 0.01} for s in (1, 2, 3)]
        records.append({"split": "validation", "step": 3, "epoch": 0, "loss": 0.5, "accuracy": 0.75})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"steps": 3, "epochs": 1, "test": {"loss": 0.5, "accuracy": 0.75}} if summary is None else summary
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "lock.json").write_text(json.dumps({"seed": 7, "dataFiles": {"iris.csv": "0" * 64}}))
    if rendered is None:
        rendered = yaml.safe_dump_all([
            {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
             "spec": {"task": "classification"}},
            {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "job"},
             "spec": {"validation": {"metrics": ["loss", "accuracy"]}}}])
    (path / "rendered.yaml").write_text(rendered)
    return path


def _report(*run_dirs: Path) -> str:
    from lmspec.report import render

    return render(list(run_dirs))


def _notes(html: str) -> list[str]:
    import html as html_lib

    return [html_lib.unescape(n) for n in re.findall(r'<p class="note">(.*?)</p>', html, re.S)]


def test_every_value_from_the_run_directory_is_escaped(tmp_path: Path) -> None:
    records = [{"split": "train", "step": 1, "loss": 1.0, HOSTILE: 2.0},
               {"split": "validation", "step": 1, "loss": 0.5, HOSTILE: 3.0}]
    rendered = yaml.safe_dump_all([{"kind": "TrainingJob", "metadata": {"name": HOSTILE},
                                    "spec": {"validation": {"metrics": [HOSTILE]}, "seed": HOSTILE}}])
    a = _run_dir(tmp_path / "a", records=records, rendered=rendered,
                 summary={"steps": HOSTILE, "epochs": HOSTILE, "stoppedEarly": HOSTILE, "test": {HOSTILE: HOSTILE}})
    b = _run_dir(tmp_path / "b")
    for html in (_report(a), _report(a, b)):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert html.count("</script>") == 1  # the data element's own end
        head, _, tail = html.partition('<script type="application/json" id="lmspec-report-data">')
        assert "&lt;script&gt;alert(1)" in head
        data = json.loads(tail.removesuffix("</script></body></html>\n"))
        assert HOSTILE in json.dumps(data)  # the numbers' names arrive intact, as data


def _list_line(p: Path) -> Path:
    d = _run_dir(p)
    with (d / "metrics.jsonl").open("a") as f:
        f.write("[1, 2, 3]\n")
    return d


def _binary_rendered(p: Path) -> Path:
    d = _run_dir(p)
    (d / "rendered.yaml").write_bytes(b"\xff\xfe\x00kind: [\n")
    return d


def _alias_bomb(levels: int) -> str:
    """YAML of a few hundred bytes whose aliases expand to 9**levels strings."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, levels)]
    return "kind: TrainingJob\n" + "\n".join(lines) + "\n"


MALFORMED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a list on a metrics line": (_list_line, "metrics.jsonl: 1 line(s) are not records of a step"),
    "a string step": (lambda p: _run_dir(p, records=[{"split": "train", "step": "three", "loss": 1.0},
                                                      {"split": "train", "step": 4, "loss": 0.5}]),
                      "metrics.jsonl: 1 line(s) are not records of a step"),
    "a step of 400 digits": (lambda p: _run_dir(p, records=[{"split": "train", "step": 10**400, "loss": 1.0}]),
                             "line 1"),
    "values that are no numbers": (lambda p: _run_dir(p, records=[
        {"split": "train", "step": 1, "loss": "low", "lr": True},
        {"split": "validation", "step": 1, "loss": 10**400, "accuracy": [1]}],
        summary={"steps": 10**400, "test": {"loss": "low", "accuracy": {"a": 1}}}), ""),
    "summary.test as a list": (lambda p: _run_dir(p, summary={"steps": 3, "test": [["loss", 0.5]]}),
                               "summary.json: 'test' is not an object"),
    "summary.json as a list": (lambda p: _run_dir(p, summary=[1, 2]), "summary.json is not a JSON object"),
    "broken rendered.yaml": (lambda p: _run_dir(p, rendered="kind: TrainingJob\nspec: [\n"),
                             "rendered.yaml cannot be read"),
    "binary rendered.yaml": (_binary_rendered, "rendered.yaml cannot be read"),
    "aliases that expand without end": (lambda p: _run_dir(p, rendered=_alias_bomb(7)),
                                        "more than 200000 nodes (aliases included)"),
    "deep rendered.yaml": (lambda p: _run_dir(p, rendered="kind: TrainingJob\nspec: " + "[" * 100_000 + "\n"),
                           "rendered.yaml cannot be read (line 2: nesting deeper than 64 levels)"),
    "rendered.yaml of odd shapes": (lambda p: _run_dir(p, rendered=yaml.safe_dump_all([
        {"kind": "TrainingJob", "metadata": ["job"], "spec": {"validation": {"metrics": "loss"}}},
        {"kind": "Model", "spec": {"task": ["classification"]}}]) + "---\nkind: Dataset\ncreated: 2024-01-01\n"), ""),
    "mathtext in names": (lambda p: _run_dir(p, rendered=yaml.safe_dump_all([
        {"kind": "TrainingJob", "metadata": {"name": "$\\frac{$"},
         "spec": {"validation": {"metrics": ["$\\nosuchcommand$"]}}}]),
        records=[{"split": "validation", "step": 1, "$\\nosuchcommand$": 1.0}]), ""),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_run_directory_gives_a_report_with_a_note(tmp_path: Path, case: str) -> None:
    make, note = MALFORMED[case]
    broken = make(tmp_path / "broken")
    html = _report(broken)
    assert "<h2>Training</h2>" in html
    assert any(note in n for n in _notes(html)), _notes(html)
    _report(broken, _run_dir(tmp_path / "good"))  # and in a comparison


@pytest.mark.integration
def test_all_malformed_directories_compared_from_the_command_line(tmp_path: Path) -> None:
    dirs = [make(tmp_path / f"run{k}") for k, (make, _) in enumerate(MALFORMED.values())]
    out = tmp_path / "report.html"
    result = lmspec("report", *map(str, dirs), "-o", str(out))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{len(dirs)} runs compared" in out.read_text()


@pytest.mark.integration
@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b'{"step": 1}\n' + b"\x89PNG\r\n\x1a\n" * 8,
                                     b'{"step": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"])
def test_a_metrics_file_that_is_no_metrics_file_is_one_line(tmp_path: Path, content: bytes) -> None:
    broken = _run_dir(tmp_path / "broken")
    (broken / "metrics.jsonl").write_bytes(content)
    result = lmspec("report", str(broken), str(_run_dir(tmp_path / "good")), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.startswith(f"lmspec: error: {broken / 'metrics.jsonl'}")


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b'{"step": 1}\n' + b"\x89PNG\r\n\x1a\n" * 8,
                                     b'{"step": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
                                     b'{"step": 1, "loss": ' + b"9" * 5000 + b"}\n"],
                         ids=["bytes", "png", "deep", "digits"])
def test_a_metrics_file_that_is_no_metrics_file_is_a_report_error(tmp_path: Path, content: bytes) -> None:
    """The in-process side of the command-line test above: alone or compared, one error naming
    the file (and the line, for JSON that cannot be read)."""
    from lmspec.report import ReportError

    broken = _run_dir(tmp_path / "broken")
    (broken / "metrics.jsonl").write_bytes(content)
    for dirs in ([broken], [_run_dir(tmp_path / "good"), broken]):
        with pytest.raises(ReportError, match=re.escape(str(broken / "metrics.jsonl"))):
            _report(*dirs)


def test_an_unwritable_report_output_is_one_line(tmp_path: Path) -> None:
    """A report that cannot be written says so in one line (exit 1); a device is never
    replaced, and an earlier report stays whole when the new one fails."""
    from click.testing import CliRunner

    from lmspec.cli import main

    run = _run_dir(tmp_path / "run")
    earlier = tmp_path / "report.html"
    earlier.write_text("earlier report")
    broken = _run_dir(tmp_path / "broken")
    (broken / "metrics.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n")
    cases = {"/proc/self/report.html": [run], "/dev/full": [run], str(run / "lock.json" / "r.html"): [run],
             str(earlier): [run, broken]}
    for out, dirs in cases.items():
        result = CliRunner().invoke(main, ["report", *map(str, dirs), "-o", out])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (out, result.exception)
        assert result.stderr.startswith("lmspec: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert Path("/dev/full").is_char_device()
    assert earlier.read_text() == "earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "report.html", "run"]


@pytest.mark.parametrize(("steps", "epochs", "shown"), [
    (3, 1, "3 steps · 1 epoch ·"), (1, 2.86, "1 step · 2.86 epochs"), (45, 0.5, "45 steps · 0.5 epochs"),
    (None, None, "? steps · ? epochs")])
def test_the_header_counts_steps_and_epochs_in_words(tmp_path: Path, steps: Any, epochs: Any, shown: str) -> None:
    summary = {k: v for k, v in (("steps", steps), ("epochs", epochs)) if v is not None}
    html = _report(_run_dir(tmp_path / "run", summary=summary))
    assert shown in html
    assert "1 epochs" not in html and "1 steps" not in html


def test_the_step_axis_has_whole_steps_only(tmp_path: Path) -> None:
    """A short run (steps 3 to 6) would get ticks every half step: the axis has whole steps only."""
    from matplotlib.figure import Figure

    from lmspec.report.figures import _finish

    ax = Figure().add_subplot()
    ax.plot([3, 6], [1.0, 0.5], label="loss")
    _finish(ax, "Loss", "loss", logy=False)
    ticks = [t for t in ax.get_xticks() if 3 <= t <= 6]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
