"""A TrainingJob as a Slurm batch script.

>>> print(sbatch(["examples/iris"]))        # doctest: +SKIP
#!/bin/bash
#SBATCH --job-name=iris-train
...

One task per node (``--ntasks-per-node=1``) runs ``torchrun``, which starts
``resources.processesPerNode`` ranks on its node and meets the other nodes through a c10d
rendezvous on the first node of the allocation; each rank's ``lmspec run`` joins torchrun's
world. The manifests are read where they are (a file system every node mounts), and so is the
run directory (``output.dir``, relative to the manifests' directory like every relative path in
a manifest); the working directory is ``storage.workspace`` when it is a path, else the
directory ``sbatch`` is called from. ``x-slurm`` in ``spec.cluster`` adds ``partition``,
``account``, ``time``, ``qos`` and ``constraint``.

The script names no interpreter or virtual environment: the job runs with the environment
``sbatch`` is called from (Slurm's default ``--export=ALL``, which ``srun`` passes on to each
node), so ``torchrun`` and ``lmspec`` are the ones on the submitter's PATH, as when the job runs
by hand. ``tests/cluster/test_slurm.py`` runs the script on a real single-node Slurm.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import ExportError, allow_outside, bundle

RDZV_PORT = 29500
NODE_COMMAND = "NODE_COMMAND"
"""The shell variable holding the command each node runs (tests run it with Slurm's variables)."""
_SLURM_KEYS = {"partition": r"[A-Za-z0-9_,.-]+", "account": r"[A-Za-z0-9_.-]+", "qos": r"[A-Za-z0-9_.-]+",
               "time": r"[0-9:-]+", "constraint": r"[A-Za-z0-9_&|()\[\]*,.-]+"}


def _extras(raw: Any, where: str) -> dict[str, str]:
    """The ``x-slurm`` extension, checked here because extensions are outside the schema."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ExportError(f"{where}: spec.cluster.x-slurm must be a mapping of {', '.join(_SLURM_KEYS)}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in _SLURM_KEYS:
            raise ExportError(f"{where}: spec.cluster.x-slurm.{key} is not a known key "
                              f"({', '.join(_SLURM_KEYS)})")
        if not isinstance(value, str) or not re.fullmatch(_SLURM_KEYS[key], value):
            raise ExportError(f"{where}: spec.cluster.x-slurm.{key} {value!r} is not a valid Slurm {key}")
        out[key] = value
    return out


def _memory(size: str) -> str:
    """``"32GiB"`` → ``"32G"``: Slurm's --mem takes K/M/G/T suffixes (powers of 1024), in whole units."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]+)", size)
    assert m is not None, size
    factor = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
              "TiB": 2**40}[m.group(2)]
    mib = -(-float(m.group(1)) * factor // 2**20)
    return f"{int(mib)}M"


def sbatch(paths: Sequence[str], *, job_name: str | None = None) -> str:
    """The batch script that runs a TrainingJob on ``resources.nodes`` Slurm nodes; raises
    :class:`ExportError` or ``ValidationFailed``."""
    b = bundle(paths)
    try:
        job = b.manifests.pick("TrainingJob", job_name, option="--job")
    except LookupError as exc:
        raise ExportError(str(exc)) from None
    spec = job.obj.spec
    r = spec.resources
    cluster = spec.cluster
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job.name}", f"#SBATCH --nodes={r.nodes}",
             "#SBATCH --ntasks-per-node=1"]
    if r.accelerator == "cuda":
        lines.append(f"#SBATCH --gpus-per-node={r.processes_per_node}")
    workdir = None
    if cluster is not None:
        if cluster.storage.dataset or cluster.storage.model:
            raise ExportError(f"{job.file}: Slurm fetches nothing before a job: copy "
                              f"{cluster.storage.dataset or cluster.storage.model} into the workspace and "
                              "drop spec.cluster.storage.dataset/model for this export")
        workspace = cluster.storage.workspace
        if workspace is not None and workspace.startswith("pvc://"):
            raise ExportError(f"{job.file}: spec.cluster.storage.workspace {workspace} is a Kubernetes volume "
                              "claim; Slurm needs a path every node mounts (e.g. /shared/lmspec)")
        workdir = workspace
        if cluster.machine.cpus is not None:
            lines.append(f"#SBATCH --cpus-per-task={max(1, round(cluster.machine.cpus))}")
        if cluster.machine.memory is not None:
            lines.append(f"#SBATCH --mem={_memory(cluster.machine.memory)}")
        for key, value in _extras(cluster.extensions.get("x-slurm"), job.file).items():
            lines.append(f"#SBATCH --{key}={value}")
    if workdir is not None:
        lines.append(f"#SBATCH --chdir={workdir}")
    lines.append("#SBATCH --output=%x-%j.out")
    # Paths stay as given (relative to the directory sbatch is called from) unless the script
    # changes directory to the workspace.
    manifests = [str(Path(p).resolve()) if workdir is not None else p for p in paths]
    # The files the manifests name are read where they are: with a working directory of its own,
    # the script allows the tree that holds the manifests and their files (as it is here), and,
    # either way, the directories of files named by absolute path (rule env.outside-project).
    here = ["--allow-outside", str(b.root)] if workdir is not None else []
    run = ["lmspec", "run", *manifests, "--job", job.name, *here, *allow_outside(b)]
    # One torchrun per node, meeting on the first node. The single quotes keep the $SLURM_*
    # variables for each node's shell to expand; srun sets SLURM_NODEID per node.
    node = ("torchrun --nnodes \"$SLURM_NNODES\" --node_rank \"$SLURM_NODEID\" "
            f"--nproc_per_node {r.processes_per_node} --rdzv_id \"$SLURM_JOB_ID\" --rdzv_backend c10d "
            "--rdzv_endpoint \"$MASTER_ADDR:$MASTER_PORT\" --no-python " + shlex.join(run))
    lines += [
        "set -euo pipefail",
        "",
        "# The first node of the allocation hosts the rendezvous.",
        "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"",
        f"export MASTER_PORT={RDZV_PORT}",
        f"export DS_ACCELERATOR={r.accelerator}",
        "",
        f"{NODE_COMMAND}={shlex.quote(node)}",
        f"srun --wait=60 --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c \"${NODE_COMMAND}\"",
    ]
    return "\n".join(lines) + "\n"
