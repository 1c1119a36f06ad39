"""The manifests of one validation run, by kind and name: what rules and environment checks
look other manifests up in.

>>> index = Index({"Model": {"m": model}})
>>> index.get("Model", "m") is model
True
>>> index_of(lmspec.load("examples/iris").manifests).export_dir("iris-train")
PosixPath('.../examples/iris/runs/iris-train/export')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..manifests.light import Pretrained, TrainingJob
from ..manifests.manifest import Manifest
from ..standard import run_dir


@dataclass
class Index:
    """The valid manifests of one validation run, by kind and name."""

    by_kind: dict[str, dict[str, Any]]
    base_dirs: Mapping[tuple[str, str], Callable[[], Path]] = field(default_factory=dict)
    """How to find the directory each manifest's relative paths are resolved against, by
    (kind, name): found only when a rule asks, since it costs a system call per path part."""

    def get(self, kind: str, name: str) -> Any | None:
        return self.by_kind.get(kind, {}).get(name)

    def base_dir(self, kind: str, name: str) -> Path:
        find = self.base_dirs.get((kind, name))
        return find() if find is not None else Path.cwd()

    def pretrained_dir(self, model: Any) -> Path | None:
        """The directory of a Model's pretrained base when it has a ``config.json``, found without
        reading it (whether the weights are there is ``--check-env``'s business)."""
        from ..domain.pretrained import CONFIG, BaseError, locate

        arch = model.spec.architecture
        if not isinstance(arch, Pretrained):
            return None
        try:
            found = locate(arch, self.base_dir("Model", model.metadata.name), export_dir_of=self.export_dir)
        except BaseError:
            return None
        if found.directory is None or not (found.directory / CONFIG).is_file():
            return None
        return found.directory

    def export_dir(self, job_name: str) -> Path | None:
        """Where ``lmspec run`` exports a TrainingJob among the inputs: under its run directory,
        which is relative to the job's own manifest (not to a Model that names it as its base,
        which may sit in another directory)."""
        job = self.get("TrainingJob", job_name)
        if not isinstance(job, TrainingJob):
            return None
        return run_dir(job, self.base_dir("TrainingJob", job_name)) / "export"


def index_of(manifests: Iterable[Manifest]) -> Index:
    """The index of a run's manifests (the first of each kind and name counts)."""
    by_kind: dict[str, dict[str, Any]] = {}
    dirs: dict[tuple[str, str], Callable[[], Path]] = {}
    for m in manifests:
        by_kind.setdefault(m.kind, {}).setdefault(m.name, m.obj)
        dirs.setdefault((m.kind, m.name), _base_dir_of(m))
    return Index(by_kind, dirs)


def _base_dir_of(m: Manifest) -> Callable[[], Path]:
    return lambda: m.base_dir
