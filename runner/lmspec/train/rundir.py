"""The run directory ``lmspec run`` trains into, and the job it runs: pick the job, write the
directory (the rendered manifests), lock it while a run owns it, tell a finished run.

>>> manifests, job = select(["examples/iris"], None)
>>> run_dir = write_run_dir(job, manifests, output=None)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from ..model.export import output_dir_for
from ..preflight import default_checks
from ..validator.core import OUTPUT_MARKER, Manifest, ManifestSet, load
from . import checkpoint
from .world import World


class RunError(Exception):
    """A user mistake found before training starts (printed without a traceback)."""


def select(paths: Sequence[str], job_name: str | None, *, check_env: bool = False,
           allow_outside: Sequence[str] = ()) -> tuple[ManifestSet, Manifest]:
    """Load and validate the manifests (raises ValidationFailed) and pick the TrainingJob; with
    ``check_env``, the environment layer of ``lmspec validate --check-env`` runs too, with the
    same ``allow_outside`` (before any rank starts, data is prepared or a model is loaded):
    what that command accepts, a run runs, and what it refuses, a run refuses."""
    manifests = load(list(paths), env_checks=default_checks() if check_env else None, allow_outside=allow_outside)
    try:
        job = manifests.pick("TrainingJob", job_name, option="--job")
    except LookupError as exc:
        raise RunError(str(exc)) from None
    model = manifests.get("Model", job.obj.spec.model)
    if model is not None:
        # The pretrained base must be there before any process starts (the validator checks it
        # only with --check-env, since it depends on the machine).
        from ..preflight.files import base_problem
        from ..validator.index import index_of

        problem = base_problem(model, index_of(manifests.manifests))
        if problem is None and getattr(model.obj.spec.architecture, "training_job", None):
            export = index_of(manifests.manifests).export_dir(model.obj.spec.architecture.training_job)
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
