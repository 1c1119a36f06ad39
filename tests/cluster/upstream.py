"""Offline checks of Kubernetes objects against the pinned upstream releases.

- :func:`schema_errors`: the vendored CRD ``openAPIV3Schema`` in strict mode — every object with
  ``properties`` and without ``x-kubernetes-preserve-unknown-fields`` gets
  ``additionalProperties: false`` (as kubeconform's ``openapi2jsonschema`` does), so a misspelt or
  removed field is an error, as the API server's pruning would silently drop it.
- :func:`cel_errors`: the CRD's CEL rules (``x-kubernetes-validations``) that do not compare with
  the old object, evaluated with cel-python where they apply.
- :func:`trainer_webhook_errors`, :func:`kserve_webhook_errors`: rules upstream checks only in its
  admission webhooks, transcribed from Trainer v2.3.0 (``pkg/runtime/framework/plugins/torch``)
  and KServe v0.20.0 (``pkg/apis/serving/v1beta1/inference_service_validation.go``).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema

CRDS = Path(__file__).parent / "crds"
FILES = {
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainer-v2.3.0-trainjob.json",
    ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"): "trainer-v2.3.0-clustertrainingruntime.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-v0.20.0-inferenceservice.json",
}

# The CRDs leave metadata as a bare object (the API server validates it); these are the
# ObjectMeta fields an exported object may use.
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}

CONFIG_MAP = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "ConfigMap"},
        "metadata": OBJECT_META,
        "data": {"type": "object", "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
                 "additionalProperties": {"type": "string"}},
    },
    "required": ["apiVersion", "kind", "metadata", "data"],
    "additionalProperties": False,
}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` that forbids unknown fields wherever Kubernetes would prune them."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    out["properties"]["metadata"] = OBJECT_META
    return out


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((CRDS / FILES[(api_version, kind)]).read_text())
    return raw


@cache
def _validator(api_version: str, kind: str, is_strict: bool) -> jsonschema.Draft7Validator:
    if (api_version, kind) == ("v1", "ConfigMap"):
        return jsonschema.Draft7Validator(CONFIG_MAP)
    schema = crd_schema(api_version, kind)
    return jsonschema.Draft7Validator(strict(schema) if is_strict else schema)


def schema_errors(obj: dict[str, Any], *, is_strict: bool = True) -> list[str]:
    """Messages for each way ``obj`` breaks its CRD schema (strict: unknown fields too)."""
    validator = _validator(obj["apiVersion"], obj["kind"], is_strict)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def cel_errors(obj: dict[str, Any]) -> list[str]:
    """Messages of the CRD's CEL rules (those without ``oldSelf``) that ``obj`` breaks."""
    if obj["apiVersion"] == "v1":
        return []
    env = celpy.Environment()
    errors: list[str] = []

    def walk(schema: dict[str, Any], value: Any, where: str) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            if "oldSelf" in rule["rule"]:
                continue  # transition rules: an export is always a create
            program = env.program(env.compile(rule["rule"]))
            if not program.evaluate({"self": celpy.json_to_cel(value)}):
                errors.append(f"{where or '/'}: {rule['message']}")
        if isinstance(value, dict):
            for key, child in value.items():
                sub = schema.get("properties", {}).get(key)
                if sub is not None:
                    walk(sub, child, f"{where}/{key}")
        elif isinstance(value, list) and "items" in schema:
            for i, child in enumerate(value):
                walk(schema["items"], child, f"{where}/{i}")

    walk(crd_schema(obj["apiVersion"], obj["kind"]), obj, "")
    return errors


TORCH_RESERVED_ENV = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
KSERVE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
KSERVE_BLOCKED_ENV = {"PYTHONPATH"}


def trainer_webhook_errors(obj: dict[str, Any]) -> list[str]:
    """Trainer's torch-plugin webhook: ``trainer.env`` must not set torchrun's PET_* variables."""
    if obj["kind"] != "TrainJob":
        return []
    names = {e["name"] for e in obj["spec"].get("trainer", {}).get("env", [])}
    bad = sorted(names & TORCH_RESERVED_ENV)
    return [f"spec.trainer.env: must not have reserved envs, invalid envs configured: {bad}"] if bad else []


def kserve_webhook_errors(obj: dict[str, Any]) -> list[str]:
    """KServe's InferenceService webhook: name, blocked env, PROTOCOL, storage URIs, autoscaling."""
    if obj["kind"] != "InferenceService":
        return []
    errors: list[str] = []
    if not KSERVE_NAME.match(obj["metadata"]["name"]):
        errors.append(f"name {obj['metadata']['name']!r} does not match {KSERVE_NAME.pattern}")
    predictor = obj["spec"]["predictor"]
    for c in predictor.get("containers", []):
        for e in c.get("env", []):
            if e["name"] in KSERVE_BLOCKED_ENV:
                errors.append(f"container {c['name']}: env {e['name']} is blocked")
            if e["name"] == "PROTOCOL" and e.get("value") not in ("v1", "v2"):
                errors.append(f"container {c['name']}: PROTOCOL must be v1 or v2")
    model = predictor.get("model", {})
    if model.get("storageUri") and model.get("storageUris"):
        errors.append("Setting both StorageURI and StorageURIs is not supported.")
    for uri in [model.get("storageUri"), *[c.get("storageUri") for c in predictor.get("containers", [])]]:
        if uri is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://.+$", uri):
            errors.append(f"storage URI {uri!r} is not SCHEME://...")
    mode = obj["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode", "Knative")
    metric, target = predictor.get("scaleMetric"), predictor.get("scaleTarget")
    if mode == "Standard":
        if (metric or "cpu") not in ("cpu", "memory"):
            errors.append(f"[{metric}] is not a supported metric")
        if target is not None and (metric or "cpu") == "cpu" and not 1 <= target <= 100:
            errors.append("the target utilization percentage should be a [1-100] integer")
    else:
        if (metric or "concurrency") not in ("concurrency", "rps"):
            errors.append(f"[{metric}] is not a supported metric")
        if target is not None and metric == "rps" and target < 1:
            errors.append("the target for rps should be greater than 1")
    return errors


def all_errors(obj: dict[str, Any]) -> list[str]:
    return schema_errors(obj) + cel_errors(obj) + trainer_webhook_errors(obj) + kserve_webhook_errors(obj)
