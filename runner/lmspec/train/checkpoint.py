"""Crash-safe DeepSpeed checkpoints.

>>> save(engine, run_dir / "checkpoints", step=200, state={...}, keep_last=3)
>>> found = latest_complete(run_dir / "checkpoints")   # ("step200", Path(...)) or None

DeepSpeed writes ``global_step<N>/`` files from every rank and a ``latest`` file naming the tag.
A crash between the two (or half-way through one rank's files) would leave ``latest`` pointing at
a broken checkpoint. So the runner saves with ``save_latest=False``, waits for every rank, and
only then has rank 0 publish ``<tag>/COMPLETE`` with an atomic rename. Resume considers complete
checkpoints only. The directory must be shared by all ranks (one machine, or a shared file
system).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

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
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step}) + "\n")
        os.replace(tmp, marker)
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
