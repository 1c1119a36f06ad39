"""Where a run's ranks come from, decided before any starts (:func:`plan_world`), and the checks
of that world against the job (:func:`check_world`, :func:`check_cuda`); see :mod:`.launch`.

>>> plan = plan_world(job.obj.spec, nproc=2, hostfile=None)
>>> plan.mode, plan.world_size
('local', 2)
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..standard import TrainingJobSpec
from ..validator.core import Manifest
from .rundir import RunError
from .world import World, under_launcher

# --- hostfiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    slots: int
    line: int


_HOST_LINE = re.compile(r"(\S+)\s+slots=(\d+)\s*(?:#.*)?")


def read_hostfile(path: str | Path) -> list[Host]:
    """The machines of a DeepSpeed hostfile, in order: one ``HOST slots=N`` per line.

    >>> read_hostfile("hosts")      # "# two machines\\nworker-1 slots=8\\nworker-2 slots=8\\n"
    [Host(name='worker-1', slots=8, line=2), Host(name='worker-2', slots=8, line=3)]

    Blank lines and ``#`` comments are skipped, as DeepSpeed does; anything else it would
    refuse with a traceback is a :class:`RunError` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"hostfile {path}: " + ("is a directory, not a file" if p.is_dir() else "no such file"))
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"hostfile {path}: cannot be read ({exc})") from None
    hosts: list[Host] = []
    first: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _HOST_LINE.fullmatch(line)
        if m is None:
            raise RunError(f"{path}:{n}: expected 'HOST slots=N' (e.g. 'worker-1 slots=8'), not {line!r}")
        name, slots = m.group(1), int(m.group(2))
        if slots < 1:
            raise RunError(f"{path}:{n}: host {name!r} has slots={slots}; slots must be at least 1")
        if name in first:
            raise RunError(f"{path}:{n}: host {name!r} is listed twice (first on line {first[name]})")
        first[name] = n
        hosts.append(Host(name, slots, n))
    if not hosts:
        raise RunError(f"hostfile {path} lists no hosts; expected lines like 'worker-1 slots=8'")
    return hosts


def is_this_machine(host: str) -> bool:
    """``localhost``, a loopback address, or this machine's own name."""
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    me = socket.gethostname()
    return host in (me, me.split(".")[0])


# --- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where the ranks come from, and how many there will be.

    >>> plan_world(spec, nproc=2, hostfile=None)
    Plan(mode='local', world_size=2, source='--nproc 2', hosts=(), hostfile=None, per_host=None)
    """

    mode: Literal["alone", "joined", "local", "hosts"]
    world_size: int
    source: str
    """What decided the world size, for messages: ``--nproc 2``, ``torchrun``, a hostfile…"""
    hosts: tuple[Host, ...] = ()
    hostfile: Path | None = None
    per_host: int | None = None
    """``--nproc`` with a hostfile: processes on each host instead of its slots."""


def plan_world(spec: TrainingJobSpec, *, nproc: int | None, hostfile: str | None) -> Plan:
    """Decide how this run gets its ranks; raises :class:`RunError` for contradictions."""
    if nproc is not None and nproc < 1:
        raise RunError(f"--nproc must be at least 1, not {nproc}")
    if under_launcher():
        world = World.from_env()
        for given, option in ((nproc is not None, "--nproc"), (hostfile is not None, "--hostfile")):
            if given:
                raise RunError(f"{option} cannot be used here: {world.launcher} started this process as rank "
                               f"{world.rank} of {world.size} and decides the processes; drop {option}")
        if world.rendezvous_missing():
            raise RunError(f"rank {world.rank} of {world.size} ({world.launcher}) needs MASTER_ADDR and "
                           "MASTER_PORT: the address of the rank-0 machine and a free port on it (in a Slurm "
                           "batch script: export MASTER_ADDR=$(scontrol show hostnames "
                           "\"$SLURM_JOB_NODELIST\" | head -n 1) MASTER_PORT=29500)")
        return Plan("joined", world.size, world.describe())
    if hostfile is not None:
        hosts = read_hostfile(hostfile)
        if nproc is not None:
            for h in hosts:
                if nproc > h.slots:
                    raise RunError(f"--nproc {nproc} asks for more processes than host {h.name!r} has slots "
                                   f"({h.slots}, {hostfile}:{h.line})")
        counts = [nproc or h.slots for h in hosts]
        source = f"hostfile {hostfile}: " + " + ".join(f"{c} on {h.name}" for h, c in zip(hosts, counts, strict=True))
        if len(hosts) == 1 and is_this_machine(hosts[0].name):
            # DeepSpeed treats any hostfile as multi-machine and checks ssh to every host, even
            # to this one; one local host is simply local ranks.
            return Plan("local", counts[0], source)
        return Plan("hosts", sum(counts), source, tuple(hosts), Path(hostfile).resolve(), nproc)
    n = nproc if nproc is not None else spec.resources.processes_per_node
    source = f"--nproc {n}" if nproc is not None else f"resources.processesPerNode {n}"
    return Plan("alone" if n == 1 else "local", n, source)


def check_world(job: Manifest, plan: Plan) -> str | None:
    """The planned world (``resources``) against the actual one.

    With ``batch.globalBatchSize`` declared, a different world would silently change the global
    batch (DeepSpeed derives it from the actual world): a :class:`RunError`. Without it, the
    global batch follows the world; the returned line says what it becomes."""
    spec = job.obj.spec
    r, b = spec.resources, spec.batch
    planned = r.nodes * r.processes_per_node
    actual = plan.world_size
    if actual == planned:
        return None
    product = b.micro_batch_size * b.gradient_accumulation_steps * actual
    formula = (f"microBatchSize {b.micro_batch_size} × gradientAccumulationSteps "
               f"{b.gradient_accumulation_steps} × {_processes(actual)} = {product}")
    plan_text = (f"resources.nodes {r.nodes} × resources.processesPerNode {r.processes_per_node} = "
                 f"{_processes(planned)}")
    if b.global_batch_size is not None and b.global_batch_size != product:
        line, _ = job.document.locate(("spec", "batch", "globalBatchSize"))
        raise RunError(f"{job.file}:{line}: batch.globalBatchSize {b.global_batch_size} was planned for "
                       f"{plan_text}, but this run has {actual} ({plan.source}), which makes the global batch "
                       f"{formula}; run with {planned} processes, or change resources or globalBatchSize "
                       "(or drop globalBatchSize to let it follow the world)")
    return (f"lmspec: training with {_processes(actual)} ({plan.source}) instead of the planned {plan_text}; "
            f"the global batch is {formula}")


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def check_cuda(job: Manifest, plan: Plan) -> None:
    """A CUDA job needs a CUDA device per process on this machine (machines reached through a
    hostfile are checked by their ranks)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if plan.mode == "hosts":
        return
    if count == 0:
        line, _ = job.document.locate(("spec", "resources", "accelerator"))
        raise RunError(f"{job.file}:{line}: resources.accelerator is cuda, but torch {torch.__version__} finds "
                       "no CUDA device on this machine; set resources.accelerator: cpu, or run on a machine "
                       "with GPUs")
    if plan.mode == "joined":
        local_rank = World.from_env().local_rank
        if local_rank >= count:
            raise RunError(f"this process is local rank {local_rank} ({plan.source}), but this machine has "
                           f"{count} CUDA device(s); start at most {count} processes per machine")
    elif plan.world_size > count:
        raise RunError(f"{plan.source} starts {plan.world_size} processes, one per CUDA device, but this "
                       f"machine has {count}")
