"""What both KServe runtimes (:mod:`.kserve`, :mod:`.kserve_hf`) write the same way: the
``InferenceService`` object, its predictor's resources, and its replicas and autoscaling.

>>> predictor, annotations = scaling(service)
>>> isvc_object("iris", labels, annotations, predictor)["kind"]
'InferenceService'
"""

from __future__ import annotations

from typing import Any

from ..standard import ServiceCluster
from ..validator.core import Manifest
from .common import ExportError, k8s_cpu, k8s_memory

API_VERSION = "serving.kserve.io/v1beta1"


def resources_of(cluster: ServiceCluster | None) -> dict[str, Any]:
    if cluster is None:
        return {}
    limits: dict[str, Any] = {}
    if cluster.machine.cpus is not None:
        limits["cpu"] = k8s_cpu(cluster.machine.cpus)
    if cluster.machine.memory is not None:
        limits["memory"] = k8s_memory(cluster.machine.memory)
    if cluster.machine.accelerators:
        limits["nvidia.com/gpu"] = cluster.machine.accelerators
    return {"limits": limits, "requests": dict(limits)} if limits else {}


def scaling(service: Manifest) -> tuple[dict[str, Any], dict[str, str]]:
    """The predictor's replica, autoscaling and timeout fields, and the deployment-mode annotation
    they need; shared by both runtimes."""
    spec = service.obj.spec
    cluster: ServiceCluster | None = spec.cluster
    predictor: dict[str, Any] = {}
    annotations: dict[str, str] = {}
    if cluster is not None:
        predictor["minReplicas"] = cluster.replicas.min
        if cluster.replicas.max is not None:
            predictor["maxReplicas"] = cluster.replicas.max
        if cluster.autoscaling is not None:
            predictor["scaleMetric"] = cluster.autoscaling.metric
            predictor["scaleTarget"] = cluster.autoscaling.target
            knative = cluster.autoscaling.metric in ("concurrency", "rps")
            annotations["serving.kserve.io/deploymentMode"] = "Knative" if knative else "Standard"
    if cluster is None or cluster.replicas.min > 0:
        annotations.setdefault("serving.kserve.io/deploymentMode", "Standard")
    elif cluster.autoscaling is None or cluster.autoscaling.metric in ("cpu", "memory"):
        raise ExportError(f"{service.file}: spec.cluster.replicas.min 0 (scale to zero) needs KServe's Knative mode, "
                          "which scales on concurrency or rps: set autoscaling.metric to one of them")
    predictor["timeout"] = max(1, round(spec.limits.request_timeout_seconds))
    return predictor, annotations


def isvc_object(name: str, labels: dict[str, str], annotations: dict[str, str],
                predictor: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"predictor": predictor}}
