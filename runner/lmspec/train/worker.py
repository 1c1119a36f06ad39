"""One training rank: ``python -m lmspec.train.worker PATHS... --job NAME --output DIR [--resume]``.

The deepspeed launcher starts this module once per rank; ``lmspec run`` calls
:func:`main_in_process` directly when it trains alone or was started by a launcher.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def main_in_process(paths: list[str], job_name: str, run_dir: Path, *, resume: bool,
                    accelerator: str) -> int:
    """Train this rank; user-facing problems print one line and return 1."""
    # DeepSpeed 0.19 calls a torch.distributed function that torch 2.13 deprecates, once per
    # gather: a warning per step on every rank that the user can do nothing about.
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor` is deprecated", category=FutureWarning)
    # DeepSpeed picks its accelerator once, at import: say which before anything imports it.
    os.environ.setdefault("DS_ACCELERATOR", accelerator)
    from ..data import DataError
    from ..nn import ModelError
    from ..validate import ValidationFailed
    from .launch import RunError, select
    from .loop import Recipe, TrainError
    from .world import World

    world = World.from_env()
    prefix = f"lmspec (rank {world.rank}): error: " if world.size > 1 else "lmspec: error: "
    try:
        manifests, job = select(paths, job_name)
        run_dir.mkdir(parents=True, exist_ok=True)
        Recipe(job, manifests, run_dir, resume=resume).run()
    except (DataError, ModelError, TrainError, RunError) as exc:
        print(prefix + str(exc), file=sys.stderr)
        return 1
    except ValidationFailed as exc:
        print(prefix + str(exc), file=sys.stderr)
        return 1
    finally:
        _shutdown()
    return 0


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmspec.train.worker")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--job", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return main_in_process(args.paths, args.job, Path(args.output), resume=args.resume,
                           accelerator=os.environ.get("DS_ACCELERATOR", "cpu"))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and the process group is gone. Skip the interpreter's teardown: with
    # optimizer offload, a native DeepSpeed/torch thread sometimes outlives it and aborts the
    # rank ("terminate called without an active exception") after a successful run.
    os._exit(code)
