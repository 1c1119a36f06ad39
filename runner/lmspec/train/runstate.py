"""A run directory's record of its run: ``lock.json`` and the checkpoints it resumes from.

>>> run = RunState(run_dir, world, zero_stage=2, keep_last=3)
>>> run.check_resumable()                      # before anything is written
>>> run.write_lock(seed=7, data=data, ds_config=cfg, params=params, base=None)
>>> progress = run.load(engine) or Progress()  # the newest intact checkpoint's progress
>>> run.save(engine, progress)                 # collective

``lock.json`` records what a run was made of (versions, seed, world size, the data's files and
digests, the DeepSpeed config, the pretrained base); a resumed run must see the same data. The
checkpoint files themselves (publishing, digests, safe loading) are :mod:`.checkpoint`'s.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from . import checkpoint
from .errors import TrainError
from .world import World

if TYPE_CHECKING:
    from ..model.pretrained import ResolvedBase


@dataclass
class Progress:
    """How far a run got through its data: what a checkpoint restores."""

    step: int = 0
    epoch: int = 0
    micro: int = 0
    """The next micro batch within the epoch."""
    best: float | None = None
    """Early stopping: the best validation value so far."""
    bad_validations: int = 0
    stopped_early: bool = False

    def done(self, total_steps: int) -> bool:
        return self.stopped_early or self.step >= total_steps


class RunState:
    """``lock.json`` and the checkpoints of one run directory, for one rank of the world."""

    def __init__(self, run_dir: Path, world: World, *, zero_stage: int, keep_last: int) -> None:
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.world = world
        self.zero_stage = zero_stage
        self.keep_last = keep_last

    # --- lock.json -----------------------------------------------------------------------------

    def check_resumable(self) -> None:
        """DeepSpeed fails deep inside loading a checkpoint from another world size or ZeRO
        stage. `lmspec run` checks before it launches; this guards ranks started otherwise,
        before anything (lock.json included) is written."""
        mismatch = checkpoint.resume_mismatch(self.ckpt_dir, world_size=self.world.size,
                                              zero_stage=self.zero_stage)
        if mismatch is not None:
            raise TrainError(mismatch)

    def write_lock(self, *, seed: int, data: Any, data_dir: Path, ds_config: dict[str, Any],
                   params: dict[str, int], base: ResolvedBase | None, partitioned_load: bool) -> None:
        """Rank 0: ``lock.json``, what the run is made of."""
        import deepspeed
        import torch

        lock = {
            "lmspec": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
            "seed": seed,
            "worldSize": self.world.size,
            "dataFingerprint": data.fingerprint,
            "dataFiles": self.lock_files(data.files, data_dir),
            "dataCache": self.lock_path(data.cache) if data.cache is not None else None,
            "deepspeedConfig": ds_config,
            "parameters": params,
        }
        if base is not None:
            lock["base"] = {**base.lock(), "loadedPartitioned": partitioned_load}
            lock["base"]["directory"] = self.lock_path(Path(lock["base"]["directory"]))
        if data.counts is not None:
            lock["dataCounts"] = data.counts
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "lock.json").write_text(json.dumps(lock, indent=2) + "\n")

    def lock_path(self, path: Path) -> str:
        """A path as ``lock.json`` writes every path: relative to the run directory (the one
        holding ``lock.json``), with ``/`` separators, so a project moved whole stays valid."""
        return Path(os.path.relpath(path.resolve(), self.run_dir.resolve())).as_posix()

    def lock_files(self, files: dict[str, str], data_dir: Path) -> dict[str, str]:
        """``dataFiles``: the digest of each file the data was prepared from (``files``, by its
        path, relative to ``data_dir`` unless absolute), by its lock path."""
        return {self.lock_path(Path(k) if Path(k).is_absolute() else data_dir / k): v for k, v in files.items()}

    def check_same_data(self, files: dict[str, str], data_dir: Path) -> None:
        """A resumed run must see the data its checkpoints were trained on."""
        try:
            before = json.loads((self.run_dir / "lock.json").read_text())
        except (OSError, ValueError):
            return
        was = before.get("dataFiles") if isinstance(before, dict) else None
        if not isinstance(was, dict):
            return
        now = self.lock_files(files, data_dir)
        changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        if changed:
            raise TrainError(
                f"cannot resume {self.run_dir}: the data changed since the run started "
                f"({', '.join(changed[:5])}{' …' if len(changed) > 5 else ''} differ from lock.json); "
                "restore the data, or train from scratch into a new directory (--output)")

    # --- checkpoints ---------------------------------------------------------------------------

    def has_checkpoint(self) -> bool:
        return bool(checkpoint.complete_tags(self.ckpt_dir))

    def load(self, engine: Any) -> Progress | None:
        """Restore the engine from the newest intact checkpoint (collective); its progress, or
        None when there is none to resume (the run starts from scratch)."""
        # Every digest is checked before DeepSpeed deserialises anything; a damaged checkpoint
        # is passed over for the newest intact one, never trained on.
        main = self.world.is_main
        tag, skipped = checkpoint.newest_intact(self.ckpt_dir)
        if main:
            for problem in skipped:
                print(f"lmspec: warning: skipping a damaged checkpoint: {problem}")
        if tag is None:
            if skipped:
                raise TrainError(f"no intact checkpoint to resume in {self.ckpt_dir} (see above); "
                                 "train from scratch into a new directory (--output)")
            if main:
                print(f"lmspec: no complete checkpoint in {self.ckpt_dir}; starting from scratch")
            return None
        if skipped and main:
            print(f"lmspec: falling back to the newest intact checkpoint, {self.ckpt_dir / tag}")
        import pickle

        try:
            with checkpoint.safe_loading(engine):
                _, state = engine.load_checkpoint(str(self.ckpt_dir), tag=tag)
        except pickle.UnpicklingError as exc:
            raise TrainError(f"refusing to load {self.ckpt_dir / tag}: it holds pickled objects other "
                             f"than tensors and DeepSpeed's own state ({str(exc).splitlines()[0]})") from None
        # The partitioned ZeRO optimizers restore their states but not the param groups' current
        # learning rate; take it from the restored schedule, or the first step would use the
        # rate the schedule set at construction.
        sched = engine.lr_scheduler
        for group, lr in zip(sched.optimizer.param_groups, sched.get_last_lr(), strict=True):
            group["lr"] = lr
        # A run that stopped early ends where it stopped, however often it is resumed.
        progress = Progress(state["step"], state["epoch"], state["micro"], state["best"],
                            state["bad_validations"], bool(state.get("stopped_early", False)))
        if main:
            print(f"lmspec: resumed from {self.ckpt_dir / tag} (step {progress.step})")
        return progress

    def save(self, engine: Any, progress: Progress) -> bool:
        """Checkpoint the engine and its progress (collective); False when the step already
        has a complete checkpoint."""
        if checkpoint.tag_for(progress.step) in checkpoint.complete_tags(self.ckpt_dir):
            return False
        state = {"step": progress.step, "epoch": progress.epoch, "micro": progress.micro,
                 "best": progress.best, "bad_validations": progress.bad_validations,
                 "stopped_early": progress.stopped_early,
                 "world_size": self.world.size, "zero_stage": self.zero_stage}
        checkpoint.save(engine, self.ckpt_dir, step=progress.step, state=state, keep_last=self.keep_last)
        return True
