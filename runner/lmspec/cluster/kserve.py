"""An InferenceService as a KServe ``InferenceService`` (``serving.kserve.io/v1beta1``).

>>> objects = inferenceservice(["examples/iris"], image="registry.example.com/lmspec-runner:0.1.0")
>>> [o["kind"] for o in objects]
['ConfigMap', 'InferenceService']

The predictor is a custom container running ``lmspec serve`` on the rendered manifests, with
readiness and startup probes on the Open Inference Protocol health endpoints. Replicas and
autoscaling map to ``minReplicas``/``maxReplicas``/``scaleMetric``/``scaleTarget``; ``cpu`` and
``memory`` metrics need KServe's Standard deployment mode (a HorizontalPodAutoscaler),
``concurrency`` and ``rps`` its Knative mode. API keys stay out of the objects: the manifest's
``auth.apiKeys`` name environment variables, which the container takes from a Secret of the
same name as the service. Written against KServe v0.20.0.

``runtime="huggingface"`` targets KServe's Hugging Face runtime instead (:mod:`.kserve_hf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ..standard import KeySource, ServiceCluster
from .common import (
    WORKSPACE,
    ExportError,
    bundle,
    choose_image,
    config_map,
    k8s_name,
    labels_for,
    node_placement,
    workspace_mounts,
    workspace_volume,
)
from .kserve_common import isvc_object, resources_of, scaling
from .kserve_hf import huggingface_predictor

KSERVE_VERSION = "v0.20.0"
"""The KServe release the objects are written for (its CRD is vendored in the tests)."""
PORT = 8080
Runtime = Literal["lmspec", "huggingface"]
"""What serves the model: ``lmspec serve`` in a custom container, or KServe's Hugging Face runtime."""
BLOCKED_ENV = ("PYTHONPATH",)
"""Environment variables KServe's webhook refuses in predictor containers."""


def inferenceservice(paths: Sequence[str], *, image: str | None = None, service_name: str | None = None,
                     runtime: Runtime = "lmspec") -> list[dict[str, Any]]:
    """The ConfigMap and KServe InferenceService that serve an lmspec InferenceService with
    ``lmspec serve`` (``runtime="lmspec"``), or the InferenceService alone on KServe's Hugging
    Face runtime (``runtime="huggingface"``, see :mod:`lmspec.cluster.kserve_hf`); raises
    :class:`ExportError` or ``ValidationFailed``."""
    b = bundle(paths)
    try:
        service = b.manifests.pick("InferenceService", service_name, option="--service")
    except LookupError as exc:
        raise ExportError(str(exc)) from None
    if runtime == "huggingface":
        if image is not None:
            raise ExportError("--image applies to --runtime lmspec; the Hugging Face runtime runs KServe's "
                              "own image (its ClusterServingRuntime kserve-huggingfaceserver)")
        return [huggingface_predictor(b, service)]
    if runtime != "lmspec":
        raise ValueError(f"unknown KServe runtime {runtime!r}")
    spec = service.obj.spec
    cluster: ServiceCluster | None = spec.cluster
    name = k8s_name(service.name, "InferenceService")
    chosen = choose_image(cluster, image, f"InferenceService {service.name!r}")
    configmap = f"{name}-manifests"
    health = {"httpGet": {"path": "/v2/health/ready", "port": PORT}}
    # The server reports ready only after loading the model and a warm-up pass; the startup probe
    # gives a slow load ten minutes before the liveness of the pod is judged.
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": chosen,
        "args": ["serve", *b.manifest_files, "--service", service.name,
                 "--host", "0.0.0.0", "--port", str(PORT)],
        "workingDir": str(WORKSPACE),
        "env": [{"name": "PROTOCOL", "value": "v2"}],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {**health, "periodSeconds": 10},
        "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10,
                         "failureThreshold": 60},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 30},
    }
    secret_env = [k.env for k in spec.auth.api_keys if isinstance(k, KeySource) and k.env is not None]
    for var in secret_env:
        if var in BLOCKED_ENV or var == "PROTOCOL":
            raise ExportError(f"{service.file}: spec.auth.apiKeys names the environment variable {var}, which "
                              "KServe reserves; choose another name (e.g. LMSPEC_API_KEYS)")
        container["env"].append({"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": var}}})
    if any(isinstance(k, KeySource) and k.file is not None for k in spec.auth.api_keys):
        raise ExportError(f"{service.file}: spec.auth.apiKeys reads a key file; on KServe keys come from a Secret "
                          "as environment variables: use {env: VAR}")
    resources = resources_of(cluster)
    if resources:
        container["resources"] = resources
    ws = workspace_volume(cluster)
    mounts = workspace_mounts(cluster, b)
    container["volumeMounts"] = mounts if ws is not None else mounts[1:]
    volumes = [{"name": "lmspec-manifests", "configMap": {"name": configmap}}]
    if ws is not None:
        volumes.insert(0, ws)
    predictor, annotations = scaling(service)
    predictor["containers"] = [container]
    predictor["volumes"] = volumes
    predictor.update(node_placement(cluster))
    labels = labels_for(service)
    return [config_map(configmap, b, labels), isvc_object(name, labels, annotations, predictor)]
