"""Makes ``upstream`` (and the training tests' ``train_helpers``) importable by the tests here
(pytest runs in importlib mode), and provides the single-node Slurm cluster of
``slurm_fixture``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "train"))

if TYPE_CHECKING:
    from slurm_fixture import Slurm


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """munged, slurmctld and slurmd, started once for the tests that ask for them (skipped, with
    the reason, where this machine cannot run them)."""
    # Imported here: the module is importable only once the path above is set.
    from slurm_fixture import single_node

    with single_node() as cluster:
        yield cluster
