"""The exported model: what ``lmspec run`` leaves in ``<output.dir>/export`` and ``lmspec serve``
loads.

>>> exported = load_exported("runs/iris-train/export")
>>> exported.predict({"features": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
{'logits': array([[ 4.2, -1.3, -3.0]], dtype=float32)}

Layout of a classifier or regressor (format 1)::

    model.safetensors   fp32 weights, consolidated from any ZeRO stage (tied weights stored once)
    model.yaml          the Model manifest, every default filled in
    transform.json      the fitted data transform (Transform.state_dict())
    export.json         {"format": 1, "lmspec": version, "job", "task", "signature",
                         "inputWidth", "outputWidth", "metrics": test metrics}

A causal language model (format 2) is a Hugging Face model directory with the same three lmspec
files beside it, so ``AutoModelForCausalLM.from_pretrained(export_dir)`` and any server that
reads that layout load it, and ``lmspec serve`` still knows its signature and limits::

    config.json, generation_config.json, model.safetensors (or shards + index: written
                        one parameter at a time by ``lmspec.model.hf_shards``)
    tokenizer.json, tokenizer_config.json, chat_template.jinja (the Dataset's declared
                        template, else the tokenizer's, when there is one)
    adapter/            LoRA runs: adapter_config.json, adapter_model.safetensors (peft)
    model.yaml, transform.json, export.json   (export.json adds "layout": "huggingface",
                         "base": the pretrained base's lock entry, "adapter", "parameters")

A LoRA run exports the adapter, and the merged model at the top level only when
``adapter.exportMerged`` is set; without it ``lmspec serve`` merges the adapter into the base
when it loads the export.

Only ``export.json``'s ``format`` is a compatibility promise; readers refuse formats they do not
know. The directory is written under a temporary name and renamed into place, so a reader never
sees half an export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._version import __version__
from ..files import publish_dir
from ..standard import Model, run_dir
from ..validator.core import OUTPUT_MARKER

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..data import Transform
    from ..validator.core import Manifest

FORMAT = 1
HF_FORMAT = 2
FORMATS = (FORMAT, HF_FORMAT)
WEIGHTS = "model.safetensors"
MANIFEST = "model.yaml"
TRANSFORM = "transform.json"
INFO = "export.json"


class ExportError(Exception):
    """An export directory that is missing, incomplete or of an unknown format."""


def output_dir_for(job_manifest: Manifest) -> Path:
    """The run directory of a TrainingJob: ``output.dir`` with ``{name}`` filled in, relative to
    the directory of the manifest's file, as every relative path in a manifest is."""
    return run_dir(job_manifest.obj, job_manifest.base_dir)


def export_dir_for(job_manifest: Manifest) -> Path:
    """Where ``lmspec run`` exports a TrainingJob's model: ``<output.dir>/export``."""
    return output_dir_for(job_manifest) / "export"


def tokenizer_dir(export: Path) -> Path | None:
    """Where an export holds the Hugging Face tokenizer the run trained with, and its chat
    template: the export itself (Hugging Face format), or its adapter directory (a LoRA adapter
    exported without the merged model); None when it holds none."""
    return next((d for d in (export, export / "adapter") if (d / "tokenizer_config.json").is_file()), None)


def save_export(
    out_dir: Path,
    model_manifest: Model,
    state_dict: dict[str, torch.Tensor] | None,
    transform_state: dict[str, Any],
    *,
    job: str,
    metrics: dict[str, float],
    input_width: int | None = None,
    write_hf: Callable[[Path], dict[str, Any]] | None = None,
) -> Path:
    """Write an export directory (replacing any previous one) and return its path.

    ``write_hf`` writes a Hugging Face model into the directory it is given (format 2) and
    returns what ``export.json`` records about it; ``state_dict`` is then unused."""
    from safetensors.torch import save_file

    from .build import output_width, unique_state

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    spec = model_manifest.spec
    info = {
        "format": FORMAT,
        "lmspec": __version__,
        "job": job,
        "task": spec.task,
        "signature": spec.signature.model_dump(mode="json", by_alias=True),
        "inputWidth": input_width,
        "outputWidth": output_width(spec),
        "metrics": metrics,
    }
    def fill(tmp: Path) -> None:
        if write_hf is not None:
            info["format"] = HF_FORMAT
            info["layout"] = "huggingface"
            info.update(write_hf(tmp))
        else:
            assert state_dict is not None
            save_file(unique_state(state_dict), str(tmp / WEIGHTS), metadata={"format": "pt"})
        rendered = model_manifest.model_dump(mode="json", by_alias=True)
        (tmp / MANIFEST).write_text(yaml.safe_dump(rendered, sort_keys=False))
        (tmp / TRANSFORM).write_text(json.dumps(transform_state, indent=2))
        (tmp / INFO).write_text(json.dumps(info, indent=2) + "\n")
        # Never read back as manifests by a directory argument (model.yaml is one).
        (tmp / OUTPUT_MARKER).write_text("export\n")

    return publish_dir(fill, out_dir)


def record_metrics(out_dir: Path, metrics: dict[str, float]) -> None:
    """Put the test metrics, computed after the export was written, into its ``export.json``
    (replaced atomically)."""
    from ..files import atomic_write_text

    path = Path(out_dir) / INFO
    info = json.loads(path.read_text())
    info["metrics"] = metrics
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")


@dataclass
class Exported:
    """A loaded export: the model in eval mode, its manifest, its data transform and info."""

    model: torch.nn.Module
    manifest: Model
    transform: Transform
    info: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.manifest.spec.task)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on raw inputs keyed by signature input name.

        Tabular models take untransformed features [N, F] (the fitted transform is applied
        here); classifiers return logits [N, C], regressors values in the target's units (the
        target transform undone); language models take token ids [N, L] and return logits
        [N, L, V].
        """
        import numpy as np
        import torch

        sig = self.manifest.spec.signature
        name = sig.inputs[0].name
        if name not in inputs:
            raise KeyError(f"missing input {name!r}")
        raw = np.asarray(inputs[name])
        if self.task == "causal-lm":
            x = torch.from_numpy(raw.astype(np.int64, copy=False))
        else:
            features = self.transform.transform_features(raw)
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.inference_mode():
            y = self.model(x).float().numpy()
        out = sig.outputs[0]
        if self.task == "regression":
            # The model learns targets in transformed units; answer in the target's own units.
            decoded = np.asarray(self.transform.decode_targets(y.reshape(-1)), dtype=np.float32)
            y = decoded.reshape(-1) if len(out.shape) == 1 else decoded.reshape(y.shape)
        return {out.name: y}


def load_exported(path: str | Path) -> Exported:
    """Load an export directory written by :func:`save_export`."""
    import torch

    from ..data import Transform
    from .build import build_model, load_weights

    path = Path(path)
    missing = [f for f in (MANIFEST, TRANSFORM, INFO) if not (path / f).is_file()]
    if missing:
        raise ExportError(f"{path} is not a complete lmspec export: missing {', '.join(missing)}")
    info = json.loads((path / INFO).read_text())
    if info.get("format") not in FORMATS:
        raise ExportError(f"{path / INFO}: export format {info.get('format')!r} is not supported "
                          f"(this lmspec reads formats {', '.join(map(str, FORMATS))})")
    manifest = Model.model_validate(yaml.safe_load((path / MANIFEST).read_text()), strict=False)
    model: torch.nn.Module
    if info["format"] == HF_FORMAT:
        model = _load_hf(path, info)
    else:
        if not (path / WEIGHTS).is_file():
            raise ExportError(f"{path} is not a complete lmspec export: missing {WEIGHTS}")
        # The exported weights replace any initial weights the manifest names.
        spec = manifest.spec.model_copy(update={"initial_weights": None})
        model = build_model(spec, input_width=info.get("inputWidth"))
        load_weights(model, path / WEIGHTS)
    model.to(torch.float32).eval()
    transform = Transform.from_state_dict(json.loads((path / TRANSFORM).read_text()))
    return Exported(model, manifest, transform, info)


def _load_hf(path: Path, info: dict[str, Any]) -> torch.nn.Module:
    """A format-2 export as a :class:`~lmspec.model.build.CausalLM`: the model at the top level,
    else the pretrained base it records with the LoRA adapter merged in."""
    from .adapters import AdapterError, merge_adapter
    from .build import CausalLM, ModelError, load_pretrained

    if (path / "config.json").is_file():
        try:
            return load_pretrained(path)
        except ModelError as e:
            raise ExportError(str(e)) from None
    base = (info.get("base") or {}).get("directory")
    if not (path / "adapter" / "adapter_config.json").is_file() or not base:
        raise ExportError(f"{path} holds neither a Hugging Face model (config.json) nor an adapter "
                          "with its base")
    if not Path(base).is_dir():
        raise ExportError(f"{path} is a LoRA adapter on the base {base}, which no longer exists; "
                          "export the merged model (adapter.exportMerged: true) to serve it alone")
    try:
        return CausalLM(merge_adapter(Path(base), path / "adapter"))
    except AdapterError as e:
        raise ExportError(str(e)) from None
