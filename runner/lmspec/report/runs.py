"""What a run directory holds, read for a report: records, events, summary, lock, manifests,
and the exported model's predictions on the test split.

>>> run = read_run(Path("runs/iris-train"))
>>> run.series("validation", "accuracy")        # ([steps], [values]) as in metrics.jsonl
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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
    notes: list[str] = field(default_factory=list)
    """Why a section is missing (no export, no data cache, ...)."""
    label: str = ""
    """How a comparison names the run: its job's name, made unique with the directory's name."""

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    def series(self, split: str, key: str) -> tuple[list[int], list[float]]:
        rows = [r for r in self.records if r.get("split") == split and isinstance(r.get(key), int | float)]
        return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]

    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("split") == "event"]

    def manifest(self, kind: str) -> dict[str, Any] | None:
        return next((d for d in self.rendered if d.get("kind") == kind), None)

    def final_metrics(self) -> dict[str, float]:
        """Test metrics, and the last validation record's metrics, as ``test.x``/``validation.x``."""
        out = {f"test.{k}": float(v) for k, v in (self.summary.get("test") or {}).items()}
        last = [r for r in self.records if r.get("split") == "validation"]
        if last:
            skip = {"time", "split", "step", "epoch"}
            out |= {f"validation.{k}": float(v) for k, v in last[-1].items()
                    if k not in skip and isinstance(v, int | float)}
        return out


def read_run(path: Path, *, predictions: bool = True) -> Run:
    path = Path(path)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{path} is not a run directory: it has no metrics.jsonl "
                          "(`lmspec run` writes one)")
    records = []
    for n, line in enumerate(metrics.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReportError(f"{metrics}:{n}: not a JSON record ({exc.msg})") from None
    summary = _json(path / "summary.json")
    lock = _json(path / "lock.json")
    rendered_text = (path / "rendered.yaml").read_text() if (path / "rendered.yaml").is_file() else ""
    rendered = [d for d in yaml.safe_load_all(rendered_text) if isinstance(d, dict)] if rendered_text else []
    job = next((d for d in rendered if d.get("kind") == "TrainingJob"), {})
    model = next((d for d in rendered if d.get("kind") == "Model"), {})
    name = str(job.get("metadata", {}).get("name") or path.name)
    declared = list(job.get("spec", {}).get("validation", {}).get("metrics", []))
    task = model.get("spec", {}).get("task")
    run = Run(path, name, records, summary, lock, rendered, rendered_text, task, declared)
    if predictions:
        _add_predictions(run)
    return run


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _add_predictions(run: Run) -> None:
    """Run the exported model on the test split kept in the run's data cache."""
    export = run.path / "export"
    if not (export / "export.json").is_file():
        run.notes.append("no exported model in this run directory: no test-set plots")
        return
    cache = run.path / "cache" / f"{run.lock.get('dataFingerprint', '')}.npz"
    if not cache.is_file():
        run.notes.append(f"the run's data cache ({cache.name}) is gone: no test-set plots")
        return
    import torch

    from ..model.export import load_exported

    exported = load_exported(export)
    with np.load(cache, allow_pickle=False) as z:
        splits = {k: z[k] for k in z.files}
    name = next((s for s in ("test", "validation", "train") if len(splits[f"{s}_inputs"])), None)
    if name is None:
        return
    x, y = splits[f"{name}_inputs"], splits[f"{name}_targets"]
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
