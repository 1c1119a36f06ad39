"""What every cluster export shares: the manifests as they travel, the pod's file layout, names,
quantities and the image.

On Kubernetes the rendered manifests (``lmspec render`` output, byte for byte) travel in a
ConfigMap, one file per directory they come from. The workload's working directory is
``/workspace`` (the ``storage.workspace`` volume, or the image's own directory), laid out as the
tree that holds the manifests and the files they name is laid out here; each rendered file is
mounted at its directory's place in it, so relative paths in the manifests
(``../data/iris.csv``, ``output.dir``, a base model in ``../chat-base``) resolve there as they do
on this machine: run directories land beside their manifests, in the workspace. Mounting the
file alone (``subPath``) leaves the rest of that directory visible.
"""

from __future__ import annotations

import glob
import itertools
import os.path
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..standard import Cluster, ServiceCluster, TrainingCluster
from ..validator.core import Manifest, ManifestSet, load, to_yaml_data
from ..validator.emit import to_yaml

WORKSPACE = PurePosixPath("/workspace")
MANIFEST_FILE = "manifests.yaml"
"""The ConfigMap key holding the rendered manifests."""

# Kubernetes object names: Trainer's CEL rule and KServe's webhook both want a DNS-1035 label
# (a letter first), stricter than lmspec's DNS-1123 names, which may start with a digit.
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ExportError(Exception):
    """The manifests cannot be exported as asked (printed without a traceback)."""


@dataclass(frozen=True)
class Placed:
    """The manifests of one directory, rendered, and where they sit in the workload."""

    key: str
    """The ConfigMap key that carries them."""
    directory: PurePosixPath
    """Their directory in the workload (under ``/workspace``)."""
    rendered: str
    """``lmspec render`` of the directory's manifests."""

    @property
    def file(self) -> PurePosixPath:
        """The rendered manifests in the workload: what ``lmspec run``/``serve`` is given."""
        return self.directory / MANIFEST_FILE


@dataclass(frozen=True)
class Bundle:
    """The validated manifests of an export, rendered, and where they sit in the workspace."""

    manifests: ManifestSet
    placed: tuple[Placed, ...]
    """One rendered file per directory the manifests come from."""
    root: Path
    """The local directory that ``/workspace`` stands for."""
    local_files: tuple[PurePosixPath, ...]
    """Local files the manifests name, as the workload sees them: they must be in the workspace."""
    outside: tuple[PurePosixPath, ...] = ()
    """The directories of the files the manifests name by absolute path: outside the workspace,
    ``lmspec run`` reads them only when allowed (``--allow-outside``, rule env.outside-project)."""

    @property
    def manifest_files(self) -> list[str]:
        """The rendered manifests in the workload, as ``lmspec run``/``serve`` is given them."""
        return [str(p.file) for p in self.placed]

    def in_workspace(self, local: Path) -> PurePosixPath:
        """Where a local path lies in the workload (outside ``/workspace`` if it is outside
        :attr:`root`)."""
        return _in_workspace(local, self.root)


def _in_workspace(local: Path, root: Path) -> PurePosixPath:
    return PurePosixPath(os.path.normpath(WORKSPACE / PurePosixPath(*Path(os.path.relpath(local, root)).parts)))


def render(manifests: ManifestSet) -> str:
    """The manifests with every default filled in, exactly as ``lmspec render`` prints them (each
    in its own apiVersion)."""
    return "---\n".join(to_yaml(to_yaml_data(m.obj, api_version=m.api_version)) for m in manifests.manifests)


def _named_files(m: Manifest) -> Iterable[str]:
    """Local paths a manifest names (relative to its directory unless absolute)."""
    spec = m.obj.spec
    if m.kind == "Dataset":
        yield from (s.path for s in spec.sources)
        for step in spec.preprocessing:
            tokenizer = getattr(step, "tokenizer", None)
            if tokenizer is not None and getattr(tokenizer, "path", None):
                yield tokenizer.path
        if spec.chat is not None:
            if spec.chat.tokenizer is not None:
                yield spec.chat.tokenizer.path
            if spec.chat.template_path is not None:
                yield spec.chat.template_path
    elif m.kind == "Model":
        if spec.initial_weights is not None:
            yield spec.initial_weights.path
        # A pretrained base by path is a directory the workload reads like any data file.
        if getattr(spec.architecture, "path", None) is not None:
            yield spec.architecture.path
    elif m.kind == "InferenceService" and spec.model.path is not None:
        yield spec.model.path


def bundle(paths: Sequence[str]) -> Bundle:
    """Load and validate ``paths`` (raises ValidationFailed) and lay them out for a workload."""
    if "-" in paths:
        raise ExportError("manifests from standard input cannot be exported: the workload needs their "
                          "directory to find the files they name; pass files or directories")
    manifests = load(list(paths))
    dirs = sorted({m.base_dir for m in manifests.manifests})
    named = [(m, p) for m in manifests.manifests for p in _named_files(m)]
    resolved = [Path(os.path.normpath(m.base_dir / p)) for m, p in named if not Path(p).is_absolute()]
    # The root is the deepest directory holding the manifests and every relative file they name;
    # the workspace mirrors the tree below it.
    root = Path(os.path.commonpath([*dirs, *[r.parent for r in resolved]]))
    placed = []
    for i, d in enumerate(dirs):
        here = ManifestSet([m for m in manifests.manifests if m.base_dir == d])
        key = MANIFEST_FILE if len(dirs) == 1 else f"manifests-{i}.yaml"
        placed.append(Placed(key, _in_workspace(d, root), render(here)))
    files = sorted({_in_workspace(r, root) for r in resolved})
    absolute = sorted({PurePosixPath(p) for _, p in named if Path(p).is_absolute()})
    return Bundle(manifests, tuple(placed), root, tuple(files) + tuple(absolute),
                  tuple(sorted({_directory_of(p) for p in absolute})))


def _directory_of(path: PurePosixPath) -> PurePosixPath:
    """The directory tree that holds ``path``: its fixed leading directories for a glob, itself
    for a directory here (a pretrained base), else its parent."""
    fixed = PurePosixPath(*itertools.takewhile(lambda part: not glob.has_magic(part), path.parts))
    if fixed != path:
        return fixed
    return path if Path(path).is_dir() else path.parent


def allow_outside(b: Bundle) -> list[str]:
    """``--allow-outside DIR`` options for ``lmspec run`` in the workload: the directories of
    the files the manifests name by absolute path (which the user named, and which
    ``lmspec.io/needs-files`` lists for whoever fills the machines)."""
    return [arg for d in b.outside for arg in ("--allow-outside", str(d))]


def k8s_name(name: str, what: str) -> str:
    """``name`` as a Kubernetes object name (DNS-1035 label), or an :class:`ExportError`."""
    if not DNS_1035.match(name) or len(name) > 63:
        raise ExportError(f"{what} name {name!r} is not a DNS-1035 label (a lowercase letter first, then "
                          "lowercase letters, digits and '-', at most 63), which Kubernetes needs here; "
                          "rename the manifest (e.g. 'job-" + name + "')")
    return name


def choose_image(cluster: Cluster | None, image: str | None, where: str) -> str:
    """The container image: ``--image`` wins over ``cluster.image``; one of them is needed."""
    chosen = image or (cluster.image if cluster is not None else None)
    if not chosen:
        raise ExportError(f"{where} names no container image: pass --image REGISTRY/lmspec-runner:TAG "
                          "or set spec.cluster.image")
    if re.search(r"\s", chosen):
        raise ExportError(f"--image {chosen!r} contains whitespace")
    return chosen


_BYTE_UNITS = {"B": "", "KB": "k", "MB": "M", "GB": "G", "TB": "T", "KiB": "Ki", "MiB": "Mi", "GiB": "Gi",
               "TiB": "Ti"}


def k8s_memory(size: str) -> str:
    """``"16GiB"`` → ``"16Gi"``: lmspec byte sizes as Kubernetes quantities."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]+)", size)
    assert m is not None, size  # the schema's pattern guarantees the shape
    return m.group(1) + _BYTE_UNITS[m.group(2)]


def k8s_cpu(cpus: float) -> str:
    """``2.0`` → ``"2"``, ``0.5`` → ``"500m"``."""
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def node_placement(cluster: Cluster | None) -> dict[str, Any]:
    """``nodeSelector`` and ``tolerations`` of a pod spec, when the manifest sets them."""
    if cluster is None:
        return {}
    out: dict[str, Any] = {}
    if cluster.node_selector:
        out["nodeSelector"] = dict(cluster.node_selector)
    if cluster.tolerations:
        out["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                              for t in cluster.tolerations]
    return out


def workspace_volume(cluster: TrainingCluster | ServiceCluster | None) -> dict[str, Any] | None:
    """The pod volume behind ``/workspace``: the named claim or a host path. None without
    ``storage.workspace``: then the image's own ``/workspace`` is used (files baked into it)."""
    ref = cluster.storage.workspace if cluster is not None else None
    if ref is None:
        return None
    if ref.startswith("pvc://"):
        claim = ref[len("pvc://"):].split("/", 1)[0]
        return {"name": "workspace", "persistentVolumeClaim": {"claimName": claim}}
    return {"name": "workspace", "hostPath": {"path": ref, "type": "Directory"}}


def workspace_mounts(cluster: TrainingCluster | ServiceCluster | None, b: Bundle) -> list[dict[str, Any]]:
    """Mounts of the workspace (with a claim's sub-path) and, inside it, the manifests: the
    workspace first."""
    ref = cluster.storage.workspace if cluster is not None else None
    workspace: dict[str, Any] = {"name": "workspace", "mountPath": str(WORKSPACE)}
    if ref is not None and ref.startswith("pvc://") and "/" in ref[len("pvc://"):]:
        sub = ref[len("pvc://"):].split("/", 1)[1].strip("/")
        if sub:
            workspace["subPath"] = sub
    manifests = [{"name": "lmspec-manifests", "mountPath": str(p.file), "subPath": p.key, "readOnly": True}
                 for p in b.placed]
    return [workspace, *manifests]


def config_map(name: str, b: Bundle, labels: dict[str, str]) -> dict[str, Any]:
    """The ConfigMap carrying the rendered manifests."""
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if b.local_files:
        # Where the workload expects the local files the manifests name, for whoever fills the
        # workspace.
        metadata["annotations"] = {"lmspec.io/needs-files": ",".join(str(f) for f in b.local_files)}
    data = {p.key: p.rendered for p in b.placed}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def labels_for(m: Manifest) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "lmspec", f"lmspec.io/{m.kind.lower()}": m.name}
