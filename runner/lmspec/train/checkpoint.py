"""Crash-safe DeepSpeed checkpoints.

>>> save(engine, run_dir / "checkpoints", step=200, state={...}, keep_last=3)
>>> found = latest_complete(run_dir / "checkpoints")   # ("step200", Path(...)) or None

DeepSpeed writes ``global_step<N>/`` files from every rank and a ``latest`` file naming the tag.
A crash between the two (or half-way through one rank's files) would leave ``latest`` pointing at
a broken checkpoint. So the runner saves with ``save_latest=False``, waits for every rank, and
only then has rank 0 publish ``<tag>/COMPLETE`` with an atomic rename. Resume considers complete
checkpoints only. The directory must be shared by all ranks (one machine, or a shared file
system).

The marker also records the world size and ZeRO stage that wrote the checkpoint: DeepSpeed can
resume only with both unchanged, and :func:`resume_mismatch` says so before DeepSpeed fails
half-way through loading.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..files import atomic_write_text

MARKER = "COMPLETE"
_TAG = re.compile(r"^step(\d+)$")


def tag_for(step: int) -> str:
    return f"step{step}"


def save(engine: Any, directory: Path, *, step: int, state: dict[str, Any], keep_last: int) -> None:
    """Save on every rank, then publish and prune on rank 0. Collective: all ranks call it."""
    import torch.distributed as dist

    tag = tag_for(step)
    engine.save_checkpoint(str(directory), tag=tag, client_state=state, save_latest=False)
    dist.barrier()
    if dist.get_rank() == 0:
        marker = directory / tag / MARKER
        written_by = {"step": step, "worldSize": dist.get_world_size(),
                      "zeroStage": int(engine.zero_optimization_stage())}
        atomic_write_text(marker, json.dumps(written_by) + "\n")
        for old in complete_tags(directory)[:-keep_last]:
            shutil.rmtree(directory / old, ignore_errors=True)
    dist.barrier()


def complete_tags(directory: Path) -> list[str]:
    """Tags of complete checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    steps = []
    for d in directory.iterdir():
        m = _TAG.match(d.name)
        if m and (d / MARKER).is_file():
            steps.append(int(m.group(1)))
    return [tag_for(s) for s in sorted(steps)]


def latest_complete(directory: Path) -> str | None:
    """The newest complete checkpoint's tag, or None."""
    tags = complete_tags(directory)
    return tags[-1] if tags else None


def written_by(directory: Path, tag: str) -> dict[str, Any]:
    """The marker of a complete checkpoint: ``{"step", "worldSize", "zeroStage"}`` (checkpoints
    from older versions of lmspec record the step only)."""
    try:
        found = json.loads((directory / tag / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def resume_mismatch(directory: Path, *, world_size: int, zero_stage: int) -> str | None:
    """Why the newest complete checkpoint cannot be resumed by this world, or None.

    >>> resume_mismatch(run_dir / "checkpoints", world_size=1, zero_stage=2)
    'cannot resume from runs/x/checkpoints/step8: it was written by 2 processes at ZeRO stage 2, …'
    """
    tag = latest_complete(directory)
    if tag is None:
        return None
    found = written_by(directory, tag)
    was_world, was_stage = found.get("worldSize"), found.get("zeroStage")
    if was_world is None or was_stage is None or (was_world, was_stage) == (world_size, zero_stage):
        return None
    return (f"cannot resume from {directory / tag}: it was written by {was_world} processes at ZeRO "
            f"stage {was_stage}, and this run has {world_size} at stage {zero_stage}; a checkpoint continues "
            "only in the world that wrote it (each rank's data shard and the global batch follow the world "
            "size, and DeepSpeed stores optimizer state per ZeRO stage, partitioned across the ranks from "
            "stage 1). Resume with "
            f"{was_world} processes and zero.stage {was_stage}, or train from scratch without --resume "
            "(and checkpointing.resume) into a new output directory (--output)")
