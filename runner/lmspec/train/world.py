"""Who am I in the training world: rank, world size and the process group.

>>> world = World.from_env()          # torchrun/deepspeed (RANK…), Slurm (SLURM_PROCID…), or alone
>>> world.init(backend="gloo")        # joins the process group, with a timeout
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

INIT_TIMEOUT_S = float(os.environ.get("LMSPEC_DIST_TIMEOUT", "300"))
"""Seconds a rank waits for the others (process-group set-up and each collective) before it
gives up with an error instead of hanging. ``LMSPEC_DIST_TIMEOUT`` overrides it."""


def _slurm_tasks() -> int:
    """Tasks of the Slurm job step this process belongs to, or 0 outside Slurm.

    A batch script itself runs with ``SLURM_PROCID=0`` and ``SLURM_NTASKS`` of the allocation;
    only a step of several tasks is a world to join. A single task is alone and may start its
    own ranks (``lmspec run --nproc 8`` inside ``sbatch -n 1``)."""
    env = os.environ
    if "SLURM_PROCID" not in env or "SLURM_NTASKS" not in env:
        return 0
    try:
        return int(env["SLURM_NTASKS"])
    except ValueError:
        return 0


def under_launcher() -> bool:
    """True when a launcher (torchrun, deepspeed, Slurm) already started this process as a rank."""
    env = os.environ
    return ("RANK" in env and "WORLD_SIZE" in env) or _slurm_tasks() > 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    size: int
    launcher: str = "none"
    """Who started this process, for messages: ``torchrun``, ``the deepspeed launcher``,
    ``Slurm``, ``a launcher (RANK/WORLD_SIZE)`` (something else set them), or ``none``."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """Where the world size comes from: ``torchrun, world size 2``, for messages."""
        return f"{self.launcher}, world size {self.size}" if self.launcher != "none" else "a single process"

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        if "RANK" in env and "WORLD_SIZE" in env:
            launcher = ("torchrun" if "TORCHELASTIC_RUN_ID" in env
                        else "the deepspeed launcher" if "CROSS_RANK" in env else "a launcher (RANK/WORLD_SIZE)")
            return cls(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]), launcher)
        if _slurm_tasks() > 1:
            return cls(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0")),
                       int(env["SLURM_NTASKS"]), "Slurm")
        return cls(0, 0, 1)

    def rendezvous_missing(self) -> bool:
        """True when this rank of several cannot find rank 0: torch.distributed needs
        MASTER_ADDR and MASTER_PORT, which Slurm does not set (torchrun and deepspeed do)."""
        return self.size > 1 and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ)

    def init(self, backend: str) -> None:
        """Join (or, alone, create) the process group that DeepSpeed will use."""
        import deepspeed

        env = os.environ
        # torch.distributed reads these; a single process invents them, Slurm users set
        # MASTER_ADDR/MASTER_PORT in their batch script.
        env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"] = str(self.rank), str(self.local_rank), str(self.size)
        if self.size == 1:
            env.setdefault("MASTER_ADDR", "127.0.0.1")
            env.setdefault("MASTER_PORT", str(free_port()))
        elif self.rendezvous_missing():
            raise RuntimeError("MASTER_ADDR and MASTER_PORT must be set when joining a world of "
                               f"{self.size} processes")
        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce kernel on first use, behind a
        # lock file in ~/.cache/torch_extensions: minutes of g++ on a small machine, and a run killed
        # mid-build leaves the lock behind, so every later run waits on it forever. That kernel only
        # serves tensor-parallel inference (`inference_all_reduce`), never training, so it is turned
        # off and gloo carries every collective.
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False,
                                   timeout=timedelta(seconds=INIT_TIMEOUT_S))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or Slurm sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_ranks() -> int:
    """Ranks on this machine: what the launcher says (torchrun's LOCAL_WORLD_SIZE, Slurm's
    tasks per node), else 1."""
    env = os.environ
    for name in ("LOCAL_WORLD_SIZE", "LMSPEC_LOCAL_RANKS", "SLURM_NTASKS_PER_NODE"):
        value = env.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def threads_per_rank(local: int | None = None) -> tuple[int, str]:
    """Torch threads for each rank: ``OMP_NUM_THREADS`` when set, else the usable cores divided
    by the local ranks (several ranks each running a thread per core slow one another down);
    and where the number came from, for the run log."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given), "OMP_NUM_THREADS"
    n = local or local_ranks()
    cores = usable_cores()
    return max(1, cores // n), f"{cores} cores / {n} local rank{'s' if n > 1 else ''}; OMP_NUM_THREADS overrides"

