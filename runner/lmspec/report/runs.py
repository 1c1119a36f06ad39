"""What a run directory holds, read for a report: records, events, summary, lock, manifests,
and the exported model's predictions on the test split.

>>> run = read_run(Path("runs/iris-train"))
>>> run.series("validation", "accuracy")        # ([steps], [values]) as in metrics.jsonl
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_PROMPTS = 3
PROMPT_TOKENS = 24
SAMPLE_TOKENS = 32


class ReportError(Exception):
    """A directory that is not a run directory (printed without a traceback)."""


@dataclass
class TestPredictions:
    """The exported model on the test split, in the target's units."""

    task: str
    targets: np.ndarray
    """Classification: class ids; regression: true values."""
    outputs: np.ndarray
    """Classification: predicted class ids; regression: predicted values."""
    classes: list[str] | None = None


@dataclass
class Run:
    path: Path
    name: str
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    lock: dict[str, Any]
    rendered: list[dict[str, Any]]
    rendered_text: str
    task: str | None
    declared: list[str] = field(default_factory=list)
    """Validation metrics the TrainingJob declared."""
    predictions: TestPredictions | None = None
    samples: list[tuple[str, str]] = field(default_factory=list)
    """Language models: (prompt, greedy continuation) pairs from the held-out text."""
    answers: list[tuple[str, str, str]] = field(default_factory=list)
    """Language models trained on chat data: (prompt, greedy answer, reference answer) of
    held-out conversations."""
    notes: list[str] = field(default_factory=list)
    """Why a section is missing (no export, no data cache, ...)."""
    label: str = ""
    """How a comparison names the run: its job's name, made unique with the directory's name."""

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    def series(self, split: str, key: str) -> tuple[list[int], list[float]]:
        rows = [(r["step"], number(r.get(key))) for r in self.records if r.get("split") == split]
        return [int(step) for step, v in rows if v is not None], [v for _, v in rows if v is not None]

    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("split") == "event"]

    def manifest(self, kind: str) -> dict[str, Any] | None:
        return next((d for d in self.rendered if d.get("kind") == kind), None)

    def final_metrics(self) -> dict[str, float]:
        """Test metrics, and the last validation record's metrics, as ``test.x``/``validation.x``."""
        out = {f"test.{k}": v for k, raw in self.test_metrics().items() if (v := number(raw)) is not None}
        last = [r for r in self.records if r.get("split") == "validation"]
        if last:
            skip = {"time", "split", "step", "epoch"}
            out |= {f"validation.{k}": v for k, raw in last[-1].items()
                    if k not in skip and (v := number(raw)) is not None}
        return out

    def test_metrics(self) -> dict[str, Any]:
        """``summary.json``'s ``test`` (checked to be an object when the run was read)."""
        test = self.summary.get("test")
        return dict(test) if isinstance(test, dict) else {}


def number(value: Any) -> float | None:
    """A value of a record as a finite float, or None for anything else (text, true, 1e400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        v = float(value)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


MAX_STEP = 2**53
"""Steps beyond this are no step a run reached (and lose their value as floats in a plot)."""


def read_run(path: Path, *, predictions: bool = True) -> Run:
    """A run directory, read leniently: what is malformed in it is left out with a note (shown in
    the report), except a ``metrics.jsonl`` that is not JSON lines at all (ReportError)."""
    path = Path(path)
    notes: list[str] = []
    records = _records(path / "metrics.jsonl", notes)
    summary = _json(path / "summary.json", notes)
    if "test" in summary and not isinstance(summary["test"], dict):
        notes.append("summary.json: 'test' is not an object of metrics; left out")
        del summary["test"]
    lock = _json(path / "lock.json", notes)
    rendered_text, rendered = _rendered(path / "rendered.yaml", notes)
    job = next((d for d in rendered if d.get("kind") == "TrainingJob"), {})
    model = next((d for d in rendered if d.get("kind") == "Model"), {})
    name = _at(job, "metadata", "name")
    metrics = _at(job, "spec", "validation", "metrics")
    task = _at(model, "spec", "task")
    declared = [m for m in metrics if isinstance(m, str)] if isinstance(metrics, list) else []
    run = Run(path, name if isinstance(name, str) and name else path.name, records, summary, lock, rendered,
              rendered_text, task if isinstance(task, str) else None, declared, notes=notes)
    if predictions:
        _add_predictions(run)
    return run


def _records(metrics: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``; a line that is JSON but no record of a step (not an
    object, or without a whole-number ``step``) is left out with a note."""
    if not metrics.is_file():
        raise ReportError(f"{metrics.parent} is not a run directory: it has no metrics.jsonl "
                          "(`lmspec run` writes one)")
    try:
        text = metrics.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{metrics}: not a metrics file (not UTF-8 text at byte {exc.start})") from None
    records = []
    skipped: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{metrics}:{n}: not a JSON record ({exc.msg})") from None
        except (RecursionError, ValueError):  # nested too deeply; an integer of thousands of digits
            raise ReportError(f"{metrics}:{n}: not a JSON record (too deep or too large to read)") from None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
            skipped.append(n)
            continue
        records.append(record)
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (", …" if len(skipped) > 5 else "")
        notes.append(f"metrics.jsonl: {len(skipped)} line(s) are not records of a step (an object with "
                     f"a whole-number step) and are left out: line {shown}")
    return records


def _json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError):
        notes.append(f"{path.name} is not valid JSON; left out")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a JSON object; left out")
        return {}
    return data


def _rendered(path: Path, notes: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """``rendered.yaml``'s text (shown as it is) and its documents, as JSON values: what the
    report compares and looks up (a date becomes its text)."""
    if not path.is_file():
        return "", []
    from ..validator.parse import ParseError, parse_text

    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text.strip():
        return text, []
    try:
        # The validator's parser: depth and alias expansion bounded (a few aliases would
        # otherwise expand to gigabytes when the documents are copied as JSON).
        docs = [d.data for d in parse_text(text, path.name, positions=False) if isinstance(d.data, dict)]
        return text, json.loads(json.dumps(docs, default=str))
    except (ParseError, RecursionError, TypeError, ValueError) as exc:
        problem = f"line {exc.line}: {exc.message}" if isinstance(exc, ParseError) else \
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notes.append(f"rendered.yaml cannot be read ({problem}): no manifest fields in this report")
        return text, []


def _at(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]…``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _add_predictions(run: Run) -> None:
    """Run the exported model on the test split kept in the run's data cache."""
    export = run.path / "export"
    if not (export / "export.json").is_file():
        run.notes.append("no exported model in this run directory: no test-set plots")
        return
    from ..data.prepare import open_entry

    where = run.lock.get("dataCache")
    # Relative to the run directory (older runs wrote an absolute path, which the join keeps).
    data = open_entry(run.path / where) if isinstance(where, str) and where else None
    if data is None:
        run.notes.append("the run's data cache is gone (lock.json's dataCache): no test-set plots")
        return
    import torch

    from ..model.export import load_exported

    exported = load_exported(export)
    name = next((s for s in ("test", "validation", "train") if len(data.split(s))), None)
    if name is None:
        return
    split = data.split(name)
    if exported.task == "causal-lm":
        rows = split.batch(np.arange(min(SAMPLE_PROMPTS, len(split))))
        x = rows.inputs
    else:
        x, y = split.inputs, split.targets
    chats = conversations(split, SAMPLE_PROMPTS) if exported.task == "causal-lm" and hasattr(split, "row_docs") \
        else []
    if chats:
        from ..model.export import tokenizer_dir
        from ..predict import answer_samples

        run.answers = answer_samples(exported, chats, max_tokens=SAMPLE_TOKENS, tokenizer_dir=tokenizer_dir(export))
        return
    if exported.task == "causal-lm":
        from ..predict import generate

        tok = exported.transform.tokenizer
        assert tok is not None  # a language model's transform holds its tokenizer
        prompts = [tok.decode([int(i) for i in row[:PROMPT_TOKENS]]) for row in x[:SAMPLE_PROMPTS]]
        run.samples = list(zip(prompts, generate(exported, prompts, max_tokens=SAMPLE_TOKENS), strict=True))
        return
    with torch.inference_mode():
        out = exported.model(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
    if exported.task == "classification":
        run.predictions = TestPredictions("classification", y.astype(np.int64), out.argmax(-1),
                                          exported.transform.classes)
    else:
        decode = exported.transform.decode_targets
        run.predictions = TestPredictions("regression", np.asarray(decode(y), dtype=np.float64),
                                          np.asarray(decode(out.reshape(-1)), dtype=np.float64))
    if name != "test":
        run.notes.append(f"the test split is empty: plots use the {name} split")


def conversations(split: Any, n: int) -> list[tuple[list[int], list[int]]]:
    """The first conversations of the first ``n`` rows of a chat split (of a preference split:
    the chosen ones) as (prompt ids, reference ids): the tokens before the first trained one
    (the rendered prompt, the assistant's turn opened), and the trained tokens that follow (the
    answer, with its end-of-turn token). Conversations trained from their first token
    (``trainOnPrompt``) have no prompt to tell apart, and are left out."""
    out: list[tuple[list[int], list[int]]] = []
    for d in split.row_docs[split.row_ptr[:-1]][:n]:
        a, b = int(split.docs[d]), int(split.docs[d + 1])
        ids, trained = split.store.read(a, b), np.asarray(split.store.read_mask(a, b), dtype=bool)
        start = int(trained.argmax())
        if not trained.any() or start == 0:
            continue
        after = np.flatnonzero(~trained[start:])
        end = start + int(after[0]) if len(after) else len(ids)
        out.append(([int(i) for i in ids[:start]], [int(i) for i in ids[start:end]]))
    return out
