"""An InferenceService on KServe's Hugging Face serving runtime (``--runtime huggingface``).

>>> from lmspec.cluster import inferenceservice
>>> (isvc,) = inferenceservice(["tests/cluster/hf"], runtime="huggingface")
>>> isvc["spec"]["predictor"]["model"]["storageUri"]
'pvc://lmspec-workspace/team-a/hf/runs/chat-sft/export'

The predictor is KServe's model spec, ``{modelFormat: {name: huggingface}, storageUri, args,
resources}``: KServe picks its ``kserve-huggingfaceserver`` runtime (vLLM where it supports the
architecture), copies the model from ``storageUri`` to ``/mnt/models`` and serves the OpenAI API
under ``/openai/v1``. No lmspec code runs in the pod, so nothing of lmspec's gateway comes along:
no API keys (a service that declares ``auth.apiKeys`` is refused), no lmspec metrics, request
limits or generation defaults; the export prints what the service declares of these
(:func:`left_behind`).

The model must already be on the workspace volume in Hugging Face format; what counts as that is
decided from the manifests (see :func:`model_directory`). Written against KServe v0.20.0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..model.export import export_dir_for
from ..standard import ServiceCluster, Tokenize
from ..validator.core import Manifest
from .common import WORKSPACE, Bundle, ExportError, k8s_name, labels_for, node_placement
from .kserve_common import isvc_object, resources_of, scaling


def huggingface_predictor(b: Bundle, service: Manifest) -> dict[str, Any]:
    """The KServe InferenceService that serves ``service`` on the Hugging Face runtime."""
    spec = service.obj.spec
    cluster: ServiceCluster | None = spec.cluster
    name = k8s_name(service.name, "InferenceService")
    if spec.auth.api_keys:
        raise ExportError(f"{service.file}: spec.auth.apiKeys: KServe's Hugging Face runtime checks no API keys "
                          "and KServe has no field for them; drop auth for this export or use --runtime lmspec")
    relative = model_directory(b, service)
    if "openai" not in spec.protocols:
        raise ExportError(f"{service.file}: spec.protocols: KServe's Hugging Face runtime serves causal language "
                          "models through the OpenAI API only; add openai or use --runtime lmspec")
    ref = cluster.storage.workspace if cluster is not None else None
    if ref is None or not ref.startswith("pvc://"):
        raise ExportError(f"{service.file}: spec.cluster.storage.workspace: the Hugging Face runtime reads the model "
                          "from a storage URI; set it to pvc://CLAIM[/SUBPATH], the volume that holds the model")
    claim = ref[len("pvc://"):].strip("/")
    model: dict[str, Any] = {
        "modelFormat": {"name": "huggingface"},
        "storageUri": f"pvc://{claim}/{relative}",
        "args": [f"--model_name={service.name}", *engine_args(service)],
    }
    res = resources_of(cluster)
    if res:
        model["resources"] = res
    predictor, annotations = scaling(service)
    predictor["model"] = model
    predictor.update(node_placement(cluster))
    for note in left_behind(service):
        print(f"lmspec export kserve: {service.file}: {note}", file=sys.stderr)
    return isvc_object(name, labels_for(service), annotations, predictor)


def left_behind(service: Manifest) -> list[str]:
    """What the service declares that KServe's Hugging Face runtime will not do (lmspec's gateway,
    which would, does not run in the pod): one line each, printed by the export."""
    spec = service.obj.spec
    notes = []
    declared = spec.generation.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if declared:
        notes.append(f"spec.generation {json.dumps(declared)} is not carried over: the runtime answers with "
                     "each request's own values and the model's generation_config.json")
    limits = {k: v for k, v in spec.limits.model_dump(mode="json", by_alias=True).items()
              if k != "requestTimeoutSeconds"}  # that one becomes the predictor's timeout
    notes.append(f"spec.limits {json.dumps(limits)} are not enforced: the runtime has no such limits "
                 "(requestTimeoutSeconds becomes the predictor's timeout)")
    if "oip-v2" in spec.protocols:
        notes.append("spec.protocols: oip-v2 is not served: the runtime serves the OpenAI API only")
    if spec.placement.device == "cpu":
        notes.append(f"spec.engine.maxSequences ({spec.engine.max_sequences}) is not passed: it is a vLLM argument, "
                     "and on CPUs the runtime serves with transformers")
    return notes


def engine_args(service: Manifest) -> list[str]:
    """Runtime arguments for the engine and placement settings it has a match for.

    ``--max_model_len`` and ``--dtype`` are the runtime's own; ``--max-num-seqs`` and
    ``--tensor-parallel-size`` are vLLM's, passed for GPU placements only (the runtime's vLLM
    backend; as ``engine: vllm`` under ``lmspec serve`` maps them)."""
    spec = service.obj.spec
    args: list[str] = []
    if spec.engine.max_model_length is not None:
        args.append(f"--max_model_len={spec.engine.max_model_length}")
    # lmspec's `auto` is the stored type; the runtime's `auto` is float16 on GPUs, so only an
    # explicit type is passed and `auto` leaves the runtime's default.
    if spec.placement.dtype != "auto":
        args.append(f"--dtype={spec.placement.dtype}")
    if spec.placement.device == "cpu":
        return args  # vLLM needs a GPU: on CPUs the runtime's transformers backend rejects vLLM's arguments
    args.append(f"--max-num-seqs={spec.engine.max_sequences}")
    if len(spec.placement.device_indices) > 1:
        args.append(f"--tensor-parallel-size={len(spec.placement.device_indices)}")
    return args


def model_directory(b: Bundle, service: Manifest) -> PurePosixPath:
    """The served model's directory relative to the workspace, once it is known to be a causal LM
    in Hugging Face format:

    - ``model.trainingJob``: the job's Model is a ``causal-lm`` with a ``pretrained`` or
      ``huggingface`` architecture, not trained on the byte tokenizer, and a LoRA job sets
      ``adapter.exportMerged`` (the runtime loads no adapter); the directory is the job's
      ``<output.dir>/export``.
    - ``model.path``: the directory (in the local copy the workspace mirrors) holds
      ``config.json``, and an lmspec export there is not of lmspec's own ``transformer``
      architecture.
    """
    spec = service.obj.spec
    if spec.model.training_job is not None:
        job = b.manifests.get("TrainingJob", spec.model.training_job)
        if job is None:
            raise ExportError(f"{service.file}: spec.model.trainingJob names {spec.model.training_job!r}, which is "
                              "not among the inputs; pass its manifest to decide whether its export is in Hugging "
                              "Face format")
        _check_job(b, service, job)
        written = job.obj.spec.output.dir
        field = f"{job.file}: spec.output.dir"
        local = export_dir_for(job)
    else:
        assert spec.model.path is not None  # the schema requires one of the two
        written = spec.model.path
        field = f"{service.file}: spec.model.path"
        local = service.resolve(written)
    if Path(written).is_absolute():
        raise ExportError(f"{field} is absolute ({written}); the Hugging Face runtime reads the model from the "
                          "workspace volume, so it must be a path relative to the manifests")
    if spec.model.path is not None:
        _check_directory(local, field)
    # The workspace is laid out as the tree around the manifests is here (see common.bundle).
    in_workspace = b.in_workspace(local)
    if not in_workspace.is_relative_to(WORKSPACE) or in_workspace == WORKSPACE:
        raise ExportError(f"{field} ({written}) leads out of the workspace volume; the model must be inside it")
    return in_workspace.relative_to(WORKSPACE)


def _check_job(b: Bundle, service: Manifest, job: Manifest) -> None:
    spec = job.obj.spec
    model = b.manifests.get("Model", spec.model)
    if model is None:
        raise ExportError(f"{job.file}: spec.model names {spec.model!r}, which is not among the inputs; pass its "
                          "manifest to decide whether the export is in Hugging Face format")
    arch = model.obj.spec.architecture
    served = f"{service.file}: spec.model.trainingJob {job.name!r}"
    if model.obj.spec.task != "causal-lm" or arch.type not in ("pretrained", "huggingface"):
        kind = f"task {model.obj.spec.task}, architecture {arch.type}"
        raise ExportError(f"{served} trains Model {model.name!r} ({kind}), which KServe's Hugging Face runtime "
                          "does not serve: it needs a causal-lm with a pretrained or huggingface architecture; "
                          "use --runtime lmspec")
    if arch.type == "huggingface":
        dataset = b.manifests.get("Dataset", spec.dataset)
        steps = dataset.obj.spec.preprocessing if dataset is not None else []
        if any(isinstance(s, Tokenize) and s.tokenizer.type == "byte" for s in steps):
            raise ExportError(f"{served} trains on the byte tokenizer (Dataset {spec.dataset!r}), which the Hugging "
                              "Face runtime's tokenizer loading does not reproduce; use --runtime lmspec")
    if spec.adapter is not None and not spec.adapter.export_merged:
        raise ExportError(f"{job.file}: spec.adapter.exportMerged is false: the export holds only the LoRA adapter, "
                          "which the Hugging Face runtime cannot load; set it to true or use --runtime lmspec")


def _check_directory(local: Path, field: str) -> None:
    if not local.is_dir():
        raise ExportError(f"{field}: {local} does not exist here; the export reads the local copy of the model "
                          "directory (the workspace mirrors it) to check that it is in Hugging Face format")
    if not (local / "config.json").is_file():
        what = ("a LoRA adapter directory (adapter_config.json) without the merged model"
                if (local / "adapter_config.json").is_file() else "no config.json")
        raise ExportError(f"{field}: {local} holds {what}; the Hugging Face runtime needs a Hugging Face model "
                          "directory (config.json, weights, tokenizer); use --runtime lmspec")
    manifest = local / "model.yaml"
    if (local / "export.json").is_file() and manifest.is_file():
        # An lmspec export: its Model manifest says which architecture was trained.
        try:
            arch = (yaml.safe_load(manifest.read_text()) or {}).get("spec", {}).get("architecture", {})
        except (OSError, yaml.YAMLError, AttributeError) as exc:
            raise ExportError(f"{field}: {local} is an unreadable lmspec export ({exc})") from None
        if isinstance(arch, dict) and arch.get("type") == "transformer":
            raise ExportError(f"{field}: {local} is an export of lmspec's own transformer architecture, served with "
                              "its tokenizer by lmspec; use --runtime lmspec")
