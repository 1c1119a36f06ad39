"""The declared test metrics of an exported model on a new file or on a split of its Dataset.

>>> target = resolve(["examples/iris"], job=None, service=None)
>>> evaluate(target, input_path=Path("new.csv"))
Evaluation(source='new.csv', rows=30, metrics={'loss': 0.11, 'accuracy': 0.97})

A new file goes through the Dataset's whole preprocessing (row steps included) with the export's
fitted statistics, and the metrics are computed as training computed them
(:class:`lmspec.train.metrics.Sums`): ``lmspec evaluate --split test`` reproduces the test
metrics of ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .predict import PredictError, Target

BATCH_ROWS = 256


@dataclass
class Evaluation:
    source: str
    rows: int
    metrics: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "metrics": self.metrics}


def evaluate(target: Target, *, input_path: Path | None = None, split: str | None = None,
             metrics: list[str] | None = None) -> Evaluation:
    """Metrics (the TrainingJob's ``evaluation.metrics`` unless given) of ``target``'s export."""
    from .model.export import load_exported, tokenizer_dir

    if target.job is None:
        raise PredictError("the TrainingJob that trained this model is not among the manifests; "
                           "pass it too (its Dataset and declared metrics are needed)")
    dataset = target.dataset
    if dataset is None:
        raise PredictError(f"Dataset {target.job.obj.spec.dataset!r} is not among the manifests; pass it too")
    wanted = metrics or list(target.job.obj.spec.evaluation.metrics)
    exported = load_exported(target.export)
    # Chat data is tokenized as in training: by the export's tokenizer (the base's, with the
    # chat template the run rendered with) when the Dataset names none.
    tokenizer = tokenizer_dir(target.export)
    if input_path is not None:
        data = _file_split(exported, dataset, input_path, tokenizer)
        source = str(input_path)
    else:
        from .data import prepare
        from .data.cost import default_cache_dir
        from .data.split import spaced_rows

        name = split or "test"
        # The data cache training used (or filled, for the next run).
        prepared = prepare(dataset.obj, dataset.base_dir, model_task=exported.task, tokenizer_dir=tokenizer,
                           cache_dir=default_cache_dir(dataset.base_dir))
        data = prepared.split(name)
        source = f"split {name} of Dataset {dataset.name!r}"
        # The rows the run evaluated: summary.json's test metrics are reproduced.
        job = target.job.obj.spec
        bound = job.validation.max_samples if name == "validation" else job.evaluation.max_samples
        rows = spaced_rows(len(data), bound)
    if input_path is not None:
        rows = np.arange(len(data))
    if len(data) == 0:
        raise PredictError(f"{source} has no rows to evaluate")
    loss = target.job.obj.spec.loss
    if loss.type in ("dpo", "simpo"):
        return Evaluation(source, len(rows), _preference_metrics(exported, data, rows, loss))
    return Evaluation(source, len(rows), _metrics(exported, data, rows, wanted))


def _file_split(exported: Any, dataset: Any, path: Path, tokenizer_dir: Path | None) -> Any:
    """A new file → a :class:`Split`, through the Dataset's preprocessing and the export's fit
    (for chat data: its conversations, rendered, tokenized and packed as in training)."""
    from .data import _tabular
    from .data._read import read_table
    from .data._rows import apply_row_steps, null_mask
    from .data.errors import DataError
    from .data.prepare import _columns
    from .data.stream import file_info

    spec = dataset.obj.spec
    fi = file_info(path)
    if spec.chat is not None or exported.task == "causal-lm":
        from .data.prepare import prepare_file

        return prepare_file(spec, dataset.base_dir, fi, tokenizer=exported.transform.tokenizer,
                            tokenizer_dir=tokenizer_dir)
    columns = _columns(spec, exported.task)
    table = apply_row_steps(read_table([fi], columns), spec.preprocessing, columns)
    for c in columns:
        missing = null_mask(table.columns[c.name])
        if missing.any():
            raise DataError("missing value (empty or NaN)", column=c.name, field=c.field,
                            **table.where(int(np.argmax(missing))))
    return _tabular.encode(exported.transform, spec, table, {c.name: c for c in columns})


def _metrics(exported: Any, data: Any, rows: np.ndarray, metrics: list[str]) -> dict[str, float]:
    import torch

    from .train.metrics import Sums

    sums = Sums()
    with torch.inference_mode():
        for start in range(0, len(rows), BATCH_ROWS):
            batch = data.batch(rows[start:start + BATCH_ROWS])
            # Packed conversations restart their positions, as they did in training.
            extra = {} if batch.positions is None else {"position_ids": torch.from_numpy(batch.positions)}
            sums.add(exported.model(torch.from_numpy(batch.inputs), **extra),
                     torch.from_numpy(np.ascontiguousarray(batch.targets)), exported.task)
    return sums.values(metrics)


PAIRS_PER_BATCH = 16


def _preference_metrics(exported: Any, data: Any, rows: np.ndarray, loss: Any) -> dict[str, float]:
    """The preference loss and its reward statistics over pairs ``rows``, as training computes
    them. DPO's reference is the starting model, which the export records (``base``)."""
    import torch

    from .model.build import load_pretrained
    from .train.preference import Objective, Window, sequence_logps

    objective = Objective.of(loss)
    reference = None
    if objective.needs_reference:
        base = (exported.info.get("base") or {}).get("directory")
        if not base or not Path(base).is_dir():
            raise PredictError("DPO's metrics compare the model with the model it started from, and the "
                               f"export does not record one that exists (base: {base!r})")
        reference = load_pretrained(Path(base)).eval()
    window = Window()
    with torch.inference_mode():
        for start in range(0, len(rows), PAIRS_PER_BATCH):
            batch = data.batch(rows[start:start + PAIRS_PER_BATCH])
            x, y = torch.from_numpy(batch.inputs), torch.from_numpy(np.ascontiguousarray(batch.targets))
            logps = sequence_logps(exported.model(x), y, average=objective.average)
            ref = None
            if reference is not None:
                r = sequence_logps(reference(x), y)
                n = len(r) // 2
                ref = torch.stack([r[:n], r[n:]], dim=1)
            value, stats = objective.loss(logps, ref)
            window.add(value, stats)
    return window.values()
