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

Integrity: the marker lists the sha256 digest of every file of the checkpoint. Before anything
deserialises a checkpoint, :func:`newest_intact` checks every digest; a checkpoint with a changed,
truncated, missing or unlisted file is skipped (with a message saying which file) for the newest
intact one. DeepSpeed's files are then read with ``torch.load(weights_only=True)`` and only the
few DeepSpeed classes its optimizer states hold allowed (:func:`safe_loading`), so a crafted file
cannot run code even if its digest was forged along with it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, sha256_file

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
                      "zeroStage": int(engine.zero_optimization_stage()),
                      "files": digests(directory / tag)}
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
    tag, _ = newest_intact(directory)
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


def digests(checkpoint_dir: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint directory (the marker aside), by relative path."""
    found: dict[str, str] = {}
    for path in sorted(p for p in checkpoint_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(checkpoint_dir).as_posix()
        if rel == MARKER or (rel.startswith(f".{MARKER}.") and rel.endswith(".tmp")):
            continue  # the marker, or what is left of an interrupted write of it
        found[rel] = sha256_file(path)
    return found


def damage(directory: Path, tag: str) -> str | None:
    """What is wrong with a complete checkpoint's files, or None if every digest matches."""
    listed = written_by(directory, tag).get("files")
    where = directory / tag
    if not isinstance(listed, dict) or not listed:
        return f"{where} lists no file digests (written by an older lmspec), so it cannot be verified"
    try:
        actual = digests(where)
    except OSError as exc:
        return f"{where}: cannot read {exc.filename}: {exc.strerror}"
    for rel, digest in listed.items():
        if rel not in actual:
            return f"{where / rel} is missing"
        if actual[rel] != digest:
            return f"{where / rel} does not match its sha256 digest (changed, truncated or corrupted)"
    extra = sorted(set(actual) - set(listed))
    if extra:
        return f"{where / extra[0]} was not part of the checkpoint when it was written"
    return None


def newest_intact(directory: Path) -> tuple[str | None, list[str]]:
    """The newest complete checkpoint whose files match their digests, and why each newer one
    was passed over."""
    skipped: list[str] = []
    for tag in reversed(complete_tags(directory)):
        problem = damage(directory, tag)
        if problem is None:
            return tag, skipped
        skipped.append(problem)
    return None, skipped


# Classes DeepSpeed's ZeRO optimizer states pickle besides tensors and plain containers.
_DEEPSPEED_GLOBALS = (
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)


@contextlib.contextmanager
def safe_loading(engine: Any) -> Iterator[None]:
    """Have DeepSpeed read checkpoint files with ``weights_only=True``: tensors, plain
    containers and the DeepSpeed classes above only, never arbitrary pickled code."""
    import importlib

    import torch

    allowed = [getattr(importlib.import_module(m), n) for m, n in _DEEPSPEED_GLOBALS]
    ckpt_engine = engine.checkpoint_engine

    def load(path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    original = ckpt_engine.load
    ckpt_engine.load = load
    try:
        yield
    finally:
        ckpt_engine.load = original
