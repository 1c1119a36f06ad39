"""The error a training run reports to its user."""

from __future__ import annotations


class TrainError(Exception):
    """A user-facing problem found while training (printed without a traceback)."""
