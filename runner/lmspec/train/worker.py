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
from typing import NoReturn


def main_in_process(paths: list[str], job_name: str, run_dir: Path, *, resume: bool) -> int:
    """Train this rank; user-facing problems print one line and return 1."""
    # DeepSpeed 0.19 calls a torch.distributed function that torch 2.13 deprecates, once per
    # gather: a warning per step on every rank that the user can do nothing about.
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor` is deprecated", category=FutureWarning)
    from .world import threads_per_rank

    # Before torch starts its thread pools where it is not imported yet; set_num_threads below
    # covers an in-process run that imported it already.
    threads, why = threads_per_rank()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from ..data import DataError
    from ..model.build import ModelError
    from ..validator.core import ValidationFailed
    from .loop import Recipe, TrainError
    from .plan import Plan, check_world
    from .rundir import RunError, select
    from .world import World

    world = World.from_env()
    prefix = f"lmspec (rank {world.rank}): error: " if world.size > 1 else "lmspec: error: "
    try:
        manifests, job = select(paths, job_name)
        # DeepSpeed picks its accelerator once, at import: say which before anything imports
        # it. From the job, not the environment: ranks that pdsh starts on other machines do
        # not inherit the launcher's DS_ACCELERATOR.
        os.environ["DS_ACCELERATOR"] = job.obj.spec.resources.accelerator
        # `lmspec run` checked the world it planned; this is the world the launcher made.
        check_world(job, Plan("joined", world.size, world.describe()))
        run_dir.mkdir(parents=True, exist_ok=True)
        if world.is_main:
            print(f"lmspec: {threads} torch thread{'s' if threads > 1 else ''} per rank ({why})", flush=True)
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
    return main_in_process(args.paths, args.job, Path(args.output), resume=args.resume)


def exit_now(code: int) -> NoReturn:
    """Leave the process once a rank has trained (or failed), skipping the interpreter's teardown.

    Everything is written and the process group is gone, but a native DeepSpeed/torch thread
    sometimes outlives the teardown and aborts the rank ("terminate called without an active
    exception") after a successful run; under torchrun that fails the whole job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
