"""A TrainingJob as a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``).

>>> objects = trainjob(["examples/iris"], image="registry.example.com/lmspec-runner:0.1.0")
>>> [o["kind"] for o in objects]
['ClusterTrainingRuntime', 'ConfigMap', 'TrainJob']

Each node's pod runs ``torchrun --no-python lmspec run …``: Trainer's torch plugin sets the
``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
``PET_MASTER_PORT`` variables that torchrun takes as its options, and each rank's ``lmspec run``
joins torchrun's world. The job runs on lmspec's own torch runtime (a ClusterTrainingRuntime,
exported with it), not on Trainer's ``deepspeed-distributed`` runtime, whose MPI launcher does not
run the job's image on the worker pods. Written against Trainer v2.3.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..standard import TrainingCluster
from ..validator.core import Manifest
from .common import (
    WORKSPACE,
    Bundle,
    ExportError,
    allow_outside,
    bundle,
    choose_image,
    config_map,
    k8s_cpu,
    k8s_memory,
    k8s_name,
    labels_for,
    node_placement,
    workspace_mounts,
    workspace_volume,
)

API_VERSION = "trainer.kubeflow.org/v1alpha1"
TRAINER_VERSION = "v2.3.0"
"""The Kubeflow Trainer release the objects are written for (its CRDs are vendored in the tests)."""
INITIALIZER_IMAGES = {
    "dataset": f"ghcr.io/kubeflow/trainer/dataset-initializer:{TRAINER_VERSION}",
    "model": f"ghcr.io/kubeflow/trainer/model-initializer:{TRAINER_VERSION}",
}
PATCH_MANAGER = "lmspec.io/export"
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
"""Set by Trainer's torch plugin; its webhook rejects a TrainJob that sets them."""


def runtime_name(fetch: Sequence[str]) -> str:
    """``lmspec-torch``, or ``lmspec-torch-dataset-model`` with initializers for what is fetched."""
    return "-".join(["lmspec-torch", *fetch])


def cluster_training_runtime(image: str, fetch: Sequence[str] = ()) -> dict[str, Any]:
    """lmspec's torch runtime: one ``node`` job (one pod per node) whose container works in
    ``/workspace``, preceded by Trainer's dataset/model initializers for what is ``fetch``ed."""
    jobs: list[dict[str, Any]] = []
    for what in fetch:
        step = f"{what}-initializer"
        jobs.append({"name": step, "template": {
            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": step}},
            "spec": {"template": {"spec": {"containers": [{"name": step, "image": INITIALIZER_IMAGES[what]}]}}}}})
    node: dict[str, Any] = {"name": "node", "template": {
        "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
        "spec": {"template": {"spec": {"containers": [{"name": "node", "image": image,
                                                       "workingDir": str(WORKSPACE)}]}}}}}
    if fetch:
        node["dependsOn"] = [{"name": f"{what}-initializer", "status": "Complete"} for what in fetch]
    jobs.append(node)
    return {"apiVersion": API_VERSION, "kind": "ClusterTrainingRuntime",
            "metadata": {"name": runtime_name(fetch), "labels": {"trainer.kubeflow.org/framework": "torch",
                                                                 "app.kubernetes.io/managed-by": "lmspec"}},
            "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": jobs}}}}


def _resources(job: Manifest, cluster: TrainingCluster | None) -> dict[str, Any]:
    r = job.obj.spec.resources
    limits: dict[str, Any] = {}
    if r.accelerator == "cuda":
        limits["nvidia.com/gpu"] = r.processes_per_node
    if cluster is not None and cluster.machine.cpus is not None:
        limits["cpu"] = k8s_cpu(cluster.machine.cpus)
    if cluster is not None and cluster.machine.memory is not None:
        limits["memory"] = k8s_memory(cluster.machine.memory)
    return {"limits": limits, "requests": dict(limits)} if limits else {}


def _patch(job_cluster: TrainingCluster | None, b: Bundle, configmap: str, fetch: Sequence[str]) -> dict[str, Any]:
    """Per-job additions to the runtime's pods: volumes, mounts and machine placement."""
    volumes: list[dict[str, Any]] = [{"name": "lmspec-manifests", "configMap": {"name": configmap}}]
    ws = workspace_volume(job_cluster)
    if ws is not None:
        volumes.insert(0, ws)
    mounts = workspace_mounts(job_cluster, b)
    jobs = []
    for what in fetch:
        step = f"{what}-initializer"
        jobs.append({"name": step, "template": {"spec": {"template": {"spec": {
            "volumes": volumes[:1], "containers": [{"name": step, "volumeMounts": mounts[:1]}],
            **node_placement(job_cluster)}}}}})
    jobs.append({"name": "node", "template": {"spec": {"template": {"spec": {
        "volumes": volumes, "containers": [{"name": "node", "volumeMounts": mounts if ws is not None else mounts[1:]}],
        **node_placement(job_cluster)}}}}})
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": jobs}}}}


def trainjob(paths: Sequence[str], *, image: str | None = None, job_name: str | None = None) -> list[dict[str, Any]]:
    """The ClusterTrainingRuntime, ConfigMap and TrainJob that run a TrainingJob on Kubeflow
    Trainer; raises :class:`ExportError` or ``ValidationFailed``."""
    b = bundle(paths)
    try:
        job = b.manifests.pick("TrainingJob", job_name, option="--job")
    except LookupError as exc:
        raise ExportError(str(exc)) from None
    spec = job.obj.spec
    cluster: TrainingCluster | None = spec.cluster
    name = k8s_name(job.name, "TrainingJob")
    chosen = choose_image(cluster, image, f"TrainingJob {job.name!r}")
    storage = cluster.storage if cluster is not None else None
    fetch = [what for what in ("dataset", "model") if storage is not None and getattr(storage, what)]
    if fetch and (storage is None or storage.workspace is None or not storage.workspace.startswith("pvc://")):
        raise ExportError(f"{job.file}: spec.cluster.storage.{fetch[0]} is fetched by an initializer pod; the "
                          "training pods see it only through a shared volume: set spec.cluster.storage.workspace "
                          "to pvc://CLAIM")
    configmap = f"{name}-manifests"
    trainer: dict[str, Any] = {
        "image": chosen,
        "command": ["torchrun", "--no-python", "lmspec", "run", *b.manifest_files, "--job", job.name,
                    *allow_outside(b)],
        "numNodes": spec.resources.nodes,
        "numProcPerNode": spec.resources.processes_per_node,
        "env": [{"name": "DS_ACCELERATOR", "value": spec.resources.accelerator}],
    }
    resources = _resources(job, cluster)
    if resources:
        trainer["resourcesPerNode"] = resources
    train_spec: dict[str, Any] = {"runtimeRef": {"name": runtime_name(fetch), "apiGroup": "trainer.kubeflow.org",
                                                 "kind": "ClusterTrainingRuntime"}}
    if fetch:
        assert storage is not None
        train_spec["initializer"] = {what: {"storageUri": getattr(storage, what)} for what in fetch}
    train_spec["trainer"] = trainer
    train_spec["runtimePatches"] = [_patch(cluster, b, configmap, fetch)]
    labels = labels_for(job)
    return [
        cluster_training_runtime(chosen, fetch),
        config_map(configmap, b, labels),
        {"apiVersion": API_VERSION, "kind": "TrainJob", "metadata": {"name": name, "labels": labels},
         "spec": train_spec},
    ]
