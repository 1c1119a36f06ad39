"""From ``lmspec run`` to training ranks: pick the job, write the run directory, launch.

>>> manifests, job = select(["examples/iris"], None)
>>> run_dir = write_run_dir(job, manifests, output=None)
>>> launch(paths, job, run_dir, nproc=2, hostfile=None, resume=False)   # → exit status

Where the ranks come from (:func:`plan_world`):

- alone: one process trains in this process;
- joined: a launcher (torchrun, deepspeed, a Slurm step of several tasks) already started this
  process as a rank: it joins that world instead of launching again;
- local: several processes on this machine (``--nproc``, ``resources.processesPerNode``, or a
  hostfile naming only this machine), started by the ``deepspeed`` launcher, which stops every
  rank as soon as one fails;
- hosts: a hostfile naming other machines: the ``deepspeed`` launcher starts the ranks there
  through pdsh (passwordless ssh; the same paths on every machine).

Before anything starts, the actual world is checked against the job: a declared
``batch.globalBatchSize`` must hold for it, a resumed checkpoint must come from the same world
size and ZeRO stage, and a CUDA job needs the devices it asks for.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import yaml

from ..model.export import output_dir_for
from ..standard import TrainingJobSpec
from ..validator.core import OUTPUT_MARKER, Manifest, ManifestSet, load
from . import checkpoint
from .world import World, free_port, under_launcher

WORKER_MODULE = "lmspec.train.worker"
"""What the deepspeed launcher starts once per rank."""


class RunError(Exception):
    """A user mistake found before training starts (printed without a traceback)."""


def select(paths: Sequence[str], job_name: str | None, *, check_env: bool = False,
           allow_outside: Sequence[str] = ()) -> tuple[ManifestSet, Manifest]:
    """Load and validate the manifests (raises ValidationFailed) and pick the TrainingJob; with
    ``check_env``, the environment layer of ``lmspec validate --check-env`` runs too, with the
    same ``allow_outside`` (before any rank starts, data is prepared or a model is loaded):
    what that command accepts, a run runs, and what it refuses, a run refuses."""
    manifests = load(list(paths), check_env=check_env, allow_outside=allow_outside)
    try:
        job = manifests.pick("TrainingJob", job_name, option="--job")
    except LookupError as exc:
        raise RunError(str(exc)) from None
    model = manifests.get("Model", job.obj.spec.model)
    if model is not None:
        # The pretrained base must be there before any process starts (the validator checks it
        # only with --check-env, since it depends on the machine).
        from ..validator.core import base_problem

        problem = base_problem(model, manifests.index())
        if problem is None and getattr(model.obj.spec.architecture, "training_job", None):
            export = manifests.index().export_dir(model.obj.spec.architecture.training_job)
            if export is not None and not export.exists():
                problem = (f"the export of TrainingJob {model.obj.spec.architecture.training_job!r} "
                           f"({export}) does not exist yet", "run that job first")
        if problem is not None:
            message, hint = problem
            raise RunError(f"{model.file}: Model {model.name!r}: {message}" + (f" ({hint})" if hint else ""))
    return manifests, job


def job_manifests(job: Manifest, manifests: ManifestSet) -> list[Manifest]:
    """The TrainingJob, its Model and its Dataset."""
    spec = job.obj.spec
    found = [job, manifests.get("Model", spec.model), manifests.get("Dataset", spec.dataset)]
    return [m for m in found if m is not None]


def write_run_dir(job: Manifest, manifests: ManifestSet, output: str | None, *, resume: bool = False) -> Path:
    """Create the run directory and write ``rendered.yaml``: the job's manifests with every
    default filled in (rank 0 only; others just learn the path).

    A fresh run refuses a directory that holds an earlier run's checkpoints: training over them
    would mix two runs' checkpoints (and resume could later pick the wrong one)."""
    run_dir = (Path(output) if output else output_dir_for(job)).resolve()
    resume = resume or job.obj.spec.checkpointing.resume
    newest = checkpoint.latest_complete(run_dir / "checkpoints")
    if newest is not None and not resume:
        raise RunError(f"{run_dir} already holds checkpoints of an earlier run (newest: {newest}); "
                       "pass --resume to continue it, or --output DIR to start a new run elsewhere")
    if World.from_env().is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        # Marks the directory as output: a directory argument never reads it back as manifests
        # (a run directory inside the manifests' folder would define every manifest twice).
        (run_dir / OUTPUT_MARKER).write_text("run\n")
        # A finished run resumed is left exactly as it was (launch says so and trains nothing).
        if not (resume and finished(run_dir)):
            docs = [rendered(m, run_dir) for m in job_manifests(job, manifests)]
            (run_dir / "rendered.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return run_dir


def rendered(m: Manifest, run_dir: Path) -> dict[str, Any]:
    """A manifest with every default filled in and every path absolute (``output.dir`` is the run
    directory itself), so that ``rendered.yaml`` means the same from wherever it is read."""
    data: dict[str, Any] = m.obj.model_dump(mode="json", by_alias=True)
    spec = data["spec"]

    def fix(holder: dict[str, Any] | None, key: str) -> None:
        if holder is not None and holder.get(key) is not None:
            holder[key] = str(m.resolve(holder[key]))

    if m.kind == "Dataset":
        for source in spec["sources"]:
            fix(source, "path")
        for step in spec["preprocessing"]:
            tokenizer = step.get("tokenizer")
            if isinstance(tokenizer, dict) and tokenizer.get("type") == "file":
                fix(tokenizer, "path")
    elif m.kind == "Model":
        fix(spec.get("initialWeights"), "path")
    elif m.kind == "TrainingJob":
        spec["output"]["dir"] = str(run_dir)
        for offload in ("offloadOptimizer", "offloadParam"):
            fix(spec["zero"][offload], "nvmePath")
    return data


_held: list[IO[str]] = []  # open lock files, held until the process exits


def lock_run_dir(run_dir: Path) -> None:
    """Take an exclusive lock on the run directory for the life of this process: two runs in one
    directory would interleave their metrics and checkpoints. The kernel releases it however the
    process ends, so a killed run never leaves a stale lock."""
    try:
        import fcntl
    except ImportError:  # not on this platform: no guard
        return
    path = run_dir / ".lmspec-run.lock"
    fh = path.open("a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunError(f"{run_dir} is in use by another lmspec run ({holder}); wait for it to end, "
                       "or pass --output DIR to run elsewhere") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    _held.append(fh)


def release_run_dirs() -> None:
    """Release the run-directory locks this process holds (for callers that go on running)."""
    while _held:
        fh = _held.pop()
        fh.close()


def finished(run_dir: Path) -> str | None:
    """A message if the run in ``run_dir`` has finished (trained, evaluated and exported), else
    None: resuming it must not train again or overwrite its export."""
    import json

    from ..model.export import INFO

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not (run_dir / "export" / INFO).is_file():
        return None
    how = "stopped early" if summary.get("stoppedEarly") else "finished"
    return (f"lmspec: the run in {run_dir} is finished ({how} after {summary.get('steps')} steps); "
            f"nothing to resume, its export in {run_dir / 'export'} is kept. Train again with "
            "--output DIR")


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


def launcher_command(plan: Plan, worker_args: Sequence[str], *, python: str = sys.executable,
                     master_port: int | None = None) -> list[str]:
    """The ``deepspeed`` launcher command that starts every rank of a local or hosts plan.

    >>> launcher_command(Plan("local", 2, "--nproc 2"), ["job.yaml", "--job", "j", "--output", "/runs/j"],
    ...                  python="python", master_port=29501)
    ['python', '-u', '-m', 'deepspeed.launcher.runner', '--master_port', '29501', '--no_local_rank',
     '--num_nodes', '1', '--num_gpus', '2', '--log_level', 'error', '--module', 'lmspec.train.worker', …]

    Several machines go through pdsh: DeepSpeed checks ssh to the first host, asks it for its
    address (``hostname -I``) as the rendezvous, and runs the same Python, the same working
    directory and the same absolute paths on every host."""
    cmd = [python, "-u", "-m", "deepspeed.launcher.runner"]
    if master_port is not None:
        cmd += ["--master_port", str(master_port)]
    cmd.append("--no_local_rank")
    if plan.mode == "local":
        cmd += ["--num_nodes", "1", "--num_gpus", str(plan.world_size)]
        # On one machine the launcher's log repeats what lmspec says (the command, the world,
        # CUDA_VISIBLE_DEVICES even on CPU) and warns that no hostfile was given, which is the
        # point of --num_gpus. Its errors (a rank's exit status) still show.
        cmd += ["--log_level", "error"]
    elif plan.mode == "hosts":
        assert plan.hostfile is not None
        cmd += ["--hostfile", str(plan.hostfile), "--launcher", "pdsh"]
        if plan.per_host is not None:
            cmd += ["--num_gpus", str(plan.per_host)]
        if len(plan.hosts) == 1:
            # One remote host: DeepSpeed would otherwise start the ranks here, not there.
            cmd.append("--force_multi")
    else:
        raise ValueError(f"a {plan.mode!r} plan starts no launcher")
    return [*cmd, "--module", WORKER_MODULE, *worker_args]


def launch(paths: Sequence[str], job: Manifest, run_dir: Path, *, nproc: int | None,
           hostfile: str | None, resume: bool) -> int:
    """Train, in this process or through the deepspeed launcher; returns the exit status of the
    launcher. Training in this process ends it (see :func:`worker.exit_now`)."""
    from . import worker

    spec = job.obj.spec
    plan = plan_world(spec, nproc=nproc, hostfile=hostfile)
    note = check_world(job, plan)
    if resume or spec.checkpointing.resume:
        mismatch = checkpoint.resume_mismatch(run_dir / "checkpoints", world_size=plan.world_size,
                                              zero_stage=spec.zero.stage)
        if mismatch is not None:
            raise RunError(mismatch)
        intact, skipped = checkpoint.newest_intact(run_dir / "checkpoints")
        if intact is None and skipped:
            raise RunError(f"no intact checkpoint to resume in {run_dir / 'checkpoints'}: "
                           + "; ".join(skipped) + ". Train from scratch into a new directory (--output)")
        done = finished(run_dir)
        if done is not None:
            if World.from_env().is_main:
                print(done, flush=True)
            return 0
    if spec.resources.accelerator == "cuda":
        check_cuda(job, plan)
    if plan.mode == "hosts" and shutil.which("pdsh") is None:
        raise RunError(f"{plan.hostfile} names other machines; DeepSpeed starts ranks there through pdsh, "
                       "which is not installed here (install pdsh and set up passwordless ssh to every host)")
    if note is not None and World.from_env().is_main:
        print(note, flush=True)
    if plan.mode in ("alone", "joined"):
        worker.exit_now(worker.main_in_process(list(paths), job.name, run_dir, resume=resume))
    worker_args = [*[str(Path(p).resolve()) if p != "-" else p for p in paths],
                   "--job", job.name, "--output", str(run_dir)]
    if resume:
        worker_args.append("--resume")
    # Several machines rendezvous on the first host, where a port free here means nothing:
    # DeepSpeed's default port applies there.
    port = free_port() if plan.mode == "local" else None
    cmd = launcher_command(plan, worker_args, master_port=port)
    env = dict(os.environ)
    env["DS_ACCELERATOR"] = spec.resources.accelerator
    env.setdefault("PYTHONUNBUFFERED", "1")
    if plan.mode == "local":
        # The deepspeed launcher says nothing of how many ranks share this machine; each
        # rank's torch threads default to the cores divided among them.
        env["LMSPEC_LOCAL_RANKS"] = str(plan.world_size)
    status = subprocess.call(cmd, env=env)
    if status != 0:
        print(f"lmspec: training failed: a rank exited with status {status}; "
              "the launcher stopped the others (see the messages above)", file=sys.stderr)
        return 1
    return 0
