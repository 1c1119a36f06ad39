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


def read_check_sample(run_dir: Path) -> CheckSample:
    def opt(name: str) -> np.ndarray | None:
        path = run_dir / name
        return np.load(path, allow_pickle=False) if path.is_file() else None

    return CheckSample(np.load(run_dir / "final_inputs.npy", allow_pickle=False), opt("final_positions.npy"),
                       np.load(run_dir / "final_predictions.npy", allow_pickle=False),
                       opt("final_prediction_positions.npy"), opt("final_argmax.npy"))
