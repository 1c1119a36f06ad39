"""Cluster-facing settings of TrainingJobs and InferenceServices.

Nothing here changes what ``lmspec run`` or ``lmspec serve`` do on one machine: these fields tell
a cluster engine (Kubernetes with Kubeflow Trainer or KServe, Slurm, …) which container image to
start, on which machines, with which storage, how many replicas and how to scale them. The names
are engine-neutral; ``x-`` keys (for example ``x-slurm``) carry engine-specific extras.
"""


from typing import Annotated, Literal

from pydantic import Field

from ._base import NonNegativeInt, PositiveInt, Spec

ByteSize = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")]

Image = Annotated[str, Field(pattern=r"^[^\s]+$", min_length=1, max_length=500)]
"""A container image reference (``registry/name:tag`` or ``…@sha256:…``)."""

FetchUri = Annotated[str, Field(pattern=r"^(hf|s3)://[^\s]+$")]
"""A URI a cluster can fetch before training: ``hf://org/name`` (Hugging Face Hub) or
``s3://bucket/prefix``."""

WorkspaceRef = Annotated[str, Field(pattern=r"^(pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[^\s]*)?|/[^\s]*)$")]
"""A shared volume: ``pvc://CLAIM[/SUBPATH]`` (a persistent volume claim) or an absolute path on
a file system every machine mounts."""


class Toleration(Spec):
    """Lets the workload run on machines marked (tainted) for special use, such as GPU pools."""

    key: str | None = Field(default=None, examples=["nvidia.com/gpu"])
    """Taint key; with ``operator: Exists`` and no key, every taint is tolerated."""

    operator: Literal["Equal", "Exists"] = Field(default="Equal", examples=["Exists"])
    """``Equal`` matches ``value``; ``Exists`` matches any value of ``key``."""

    value: str | None = Field(default=None, examples=["present"])
    """Taint value, for ``operator: Equal``."""

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, examples=["NoSchedule"]
    )
    """Taint effect to tolerate; every effect when omitted."""


class ServiceStorage(Spec):
    """Where files come from on a cluster."""

    workspace: WorkspaceRef | None = Field(default=None, examples=["pvc://lmspec-workspace"])
    """A shared volume that becomes the working directory: run directories (``output.dir``) are
    written there, and local paths in the manifests are looked up there, laid out as they are
    around the manifests' directory on this machine. A fresh, empty volume per job when omitted."""



class Storage(ServiceStorage):
    """Where files come from on a cluster, and what is fetched before training."""

    dataset: FetchUri | None = Field(default=None, examples=["hf://datasets/tatsu-lab/alpaca"])
    """Data fetched into ``<workspace>/dataset`` before training; a Dataset reads it with paths
    into that directory."""

    model: FetchUri | None = Field(default=None, examples=["hf://Qwen/Qwen2.5-0.5B"])
    """Model files fetched into ``<workspace>/model`` before training."""


class MachineResources(Spec):
    """What each machine (node, pod or replica) reserves besides the training processes'
    accelerators."""

    cpus: float | None = Field(default=None, gt=0.0, examples=[8])
    """CPU cores; fractions are allowed (``0.5``)."""

    memory: ByteSize | None = Field(default=None, examples=["32GiB"])
    """Host memory."""

    accelerators: NonNegativeInt | None = Field(default=None, examples=[1])
    """CUDA devices, for InferenceServices. A TrainingJob's come from ``resources``: one per
    process when ``resources.accelerator`` is ``cuda``."""


class Cluster(Spec):
    """How a cluster engine runs the workload."""

    image: Image | None = Field(default=None, examples=["registry.example.com/lmspec-runner:0.1.0"])
    """Container image with lmspec installed (exporters take ``--image`` when omitted)."""

    node_selector: dict[str, str] = Field(default_factory=dict, examples=[{"gpu-type": "h100"}])
    """Labels a machine must carry to be used."""

    tolerations: list[Toleration] = Field(default_factory=list, examples=[[{"key": "nvidia.com/gpu",
                                                                            "operator": "Exists"}]])
    """Machine taints the workload tolerates."""

    machine: MachineResources = Field(default_factory=MachineResources, examples=[{"cpus": 8, "memory": "32GiB"}])
    """CPU and memory per machine."""


class TrainingCluster(Cluster):
    """How a cluster engine runs a TrainingJob: one machine per ``resources.nodes``, each running
    ``resources.processesPerNode`` training processes."""

    storage: Storage = Field(default_factory=Storage, examples=[{"workspace": "pvc://lmspec-workspace"}])
    """Shared volume and sources fetched before training."""


class Replicas(Spec):
    """How many copies of the server run."""

    min: NonNegativeInt = Field(default=1, examples=[2])
    """Fewest replicas; 0 lets an engine that supports it scale to zero when idle."""

    max: PositiveInt | None = Field(default=None, examples=[8])
    """Most replicas; equal to ``min`` (no autoscaling) when omitted."""


class Autoscaling(Spec):
    """What drives the number of replicas between ``replicas.min`` and ``replicas.max``."""

    metric: Literal["cpu", "memory", "concurrency", "rps"] = Field(examples=["concurrency"])
    """``cpu``: utilisation of the requested CPU, in percent; ``memory``: average memory per
    replica, in MiB; ``concurrency``: requests in flight per replica; ``rps``: requests per
    second per replica."""

    target: PositiveInt = Field(examples=[70])
    """Value of ``metric`` each replica aims at; at most 100 for ``cpu``."""


class ServiceCluster(Cluster):
    """How a cluster engine runs the server: image, machines, storage, replicas and scaling."""

    storage: ServiceStorage = Field(default_factory=ServiceStorage, examples=[{"workspace": "pvc://lmspec-workspace"}])
    """Shared volume (the one a TrainingJob wrote its run directory to, to serve its export)."""

    replicas: Replicas = Field(default_factory=Replicas, examples=[{"min": 1, "max": 4}])
    """Replica bounds."""

    autoscaling: Autoscaling | None = Field(default=None, examples=[{"metric": "cpu", "target": 70}])
    """Scaling signal; the engine's default when omitted."""
