"""The model directory an InferenceService serves: an lmspec export or a Hugging Face directory.

>>> model_dir(manifests, manifests.pick("InferenceService", "iris"))
PosixPath('/work/runs/iris-train/export')

Both ``lmspec serve`` and ``lmspec predict``/``evaluate`` (given a service) find the model here, so
they agree on what a service serves and say the same thing when it is not there.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..validator.core import Manifest, ManifestSet


class ModelDirError(Exception):
    """A service whose model directory is missing or unusable; the message says what to fix."""


def model_dir(manifests: ManifestSet, service: Manifest, *, paths: list[str] | None = None,
              export: str | None = None) -> Path:
    """The export directory to serve: ``export`` when given (an export directory, or a run
    directory holding ``export/``), else ``spec.model.path`` (relative to the manifest's file)
    or the export of ``spec.model.trainingJob``. Raises :class:`ModelDirError` if it is not there.
    ``paths`` are the command's inputs, named in the hint to train the model first."""
    from ..model.export import INFO, export_dir_for

    source = service.obj.spec.model
    where = f"{service.file}: InferenceService '{service.name}'"
    if export is not None:
        path = Path(export).resolve()
        if not (path / INFO).is_file() and (path / "export" / INFO).is_file():
            path = path / "export"
        where = "--export"
        hint = "name a run directory or its export/"
    elif source.path is not None:
        path = service.resolve(source.path)
        hint = "export a model there with `lmspec run` first"
    else:
        job = manifests.get("TrainingJob", source.training_job)
        if job is None:
            raise ModelDirError(f"{where}: spec.model.trainingJob '{source.training_job}' is not among "
                                "the manifests; pass its TrainingJob manifest too")
        path = export_dir_for(job)
        # The same inputs that define the service define the job's model and dataset too.
        inputs = " ".join(shlex.quote(p) for p in (paths or [job.file]))
        several = len(manifests.of_kind("TrainingJob")) > 1
        hint = f"run `lmspec run {inputs}" + (f" --job {job.name}" if several else "") + "` first"
    if is_hf_dir(path):
        task = "causal-lm"  # a Hugging Face format directory: a causal LM (checked when loaded)
    elif not (path / INFO).is_file():
        raise ModelDirError(f"{where}: no exported model at {path} ({hint})")
    else:
        try:
            task = json.loads((path / INFO).read_text()).get("task")
        except (OSError, ValueError) as exc:
            raise ModelDirError(f"{path / INFO}: unreadable export info: {exc}") from None
    if "openai" in service.obj.spec.protocols and task != "causal-lm":
        raise ModelDirError(f"{where}: spec.protocols has 'openai', but the model at {path} is a "
                            f"{task} model, not a causal language model")
    return path


def is_hf_dir(path: Path) -> bool:
    """A Hugging Face format directory: a causal LM's ``config.json`` or a LoRA adapter's
    ``adapter_config.json``."""
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
