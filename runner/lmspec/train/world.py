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


def under_launcher() -> bool:
    """True when a launcher (torchrun, deepspeed, Slurm) already started this process as a rank."""
    env = os.environ
    return ("RANK" in env and "WORLD_SIZE" in env) or ("SLURM_PROCID" in env and "SLURM_NTASKS" in env)


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

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        if "RANK" in env and "WORLD_SIZE" in env:
            return cls(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]))
        if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
            return cls(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0")),
                       int(env["SLURM_NTASKS"]))
        return cls(0, 0, 1)

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
        elif "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
            raise RuntimeError("MASTER_ADDR and MASTER_PORT must be set when joining a world of "
                               f"{self.size} processes")
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False,
                                   timeout=timedelta(seconds=INIT_TIMEOUT_S))
