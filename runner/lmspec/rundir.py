"""Where a TrainingJob's run lives, for the runner and the validator alike (and without pydantic,
which the validator does not import)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .standard import TrainingJob


def run_dir(job: TrainingJob, base_dir: Path) -> Path:
    """A TrainingJob's run directory: ``output.dir`` with ``{name}`` filled in, relative to
    ``base_dir``, the directory of the job's manifest, as every relative path in a manifest is."""
    # A plain replacement, not str.format: the template comes from a manifest, and format()
    # would evaluate attribute lookups such as {name.__class__}.
    return base_dir / job.spec.output.dir.replace("{name}", job.metadata.name)
