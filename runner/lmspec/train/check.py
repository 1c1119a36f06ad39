"""The sample a run keeps to check its export: what the trained engine computed on a few rows.

>>> s = read_check_sample(Path("runs/tinylm-train"))
>>> got = model(s.inputs)                     # the export's full output on the same rows
>>> np.testing.assert_allclose(s.select(got), s.outputs, atol=1e-4)

Written by rank 0 at the end of training, beside the export (``final_*.npy`` in the run
directory). A classifier or regressor keeps its outputs on up to 64 test rows. A language model
keeps 4 rows, each ``sequenceLength`` wide: the argmax of every position, and the whole-vocabulary
logits of 4 positions spread over the row (first and last included), so the sample stays a few
MB whatever the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREDICTION_ROWS = 64
"""Test rows whose final predictions are saved beside the export, to check it reproduces them."""
CHECK_ROWS = 4
"""The same for a language model, whose outputs are a row's length × its vocabulary."""
CHECK_POSITIONS = 4
"""Positions of each such row whose whole-vocabulary logits are kept (the argmax of every
position is kept too)."""


def check_positions(length: int) -> np.ndarray:
    """The positions of a row whose logits the export check keeps: spread over the row, the
    first and the last included."""
    return np.unique(np.linspace(0, length - 1, num=min(CHECK_POSITIONS, length)).round().astype(np.int64))


@dataclass
class CheckSample:
    inputs: np.ndarray
    """The rows: features, or token ids ``[R, T]``."""
    positions: np.ndarray | None
    """Chat data: the position ids the rows were run with."""
    outputs: np.ndarray
    """Tabular: ``[R, C]``. Language model: logits ``[R, len(at), V]`` at positions ``at``."""
    at: np.ndarray | None
    argmax: np.ndarray | None
    """Language model: the argmax of every position, ``[R, T]``."""

    def select(self, full: np.ndarray) -> np.ndarray:
        """The kept part of a model's full output on :attr:`inputs`."""
        return full if self.at is None else full[:, self.at]


def write_check_sample(run_dir: Path, s: CheckSample) -> None:
    """Rank 0: the sample into the run directory, as :func:`read_check_sample` reads it."""
    np.save(run_dir / "final_inputs.npy", s.inputs)
    if s.positions is not None:
        np.save(run_dir / "final_positions.npy", s.positions)
    np.save(run_dir / "final_predictions.npy", s.outputs)
    if s.at is not None:
        np.save(run_dir / "final_prediction_positions.npy", s.at)
    if s.argmax is not None:
        np.save(run_dir / "final_argmax.npy", s.argmax)


def read_check_sample(run_dir: Path) -> CheckSample:
    def opt(name: str) -> np.ndarray | None:
        path = run_dir / name
        return np.load(path, allow_pickle=False) if path.is_file() else None

    return CheckSample(np.load(run_dir / "final_inputs.npy", allow_pickle=False), opt("final_positions.npy"),
                       np.load(run_dir / "final_predictions.npy", allow_pickle=False),
                       opt("final_prediction_positions.npy"), opt("final_argmax.npy"))
