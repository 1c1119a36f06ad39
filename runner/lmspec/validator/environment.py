"""Layer 5, the environment (``--check-env``): runs the checks of what the manifests point at on
this machine — files, pretrained bases, chat templates and records, engines, the data itself.

This module is the plumbing only. The checks are plain functions gathered in an
:class:`EnvironmentChecks` and passed in, never imported: lmspec's own, which ``lmspec validate
--check-env``, ``lmspec run`` and ``lmspec serve`` use, are :mod:`lmspec.preflight`'s::

    checks = lmspec.preflight.default_checks()
    findings = list(check_manifest(manifest, checks, allow_outside=["/data"], index=index))

Only files in the manifest's own directory tree or the working directory's are read (plus the
trees in ``allow_outside``): a manifest from elsewhere must not make the validator hash, and
print facts about, ``/etc/shadow`` or ``../../secrets``. Each check asks :meth:`Scope.inside`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..manifests.findings import Finding
from ..manifests.manifest import Manifest
from .at import finding_at
from .index import Index

JobIssue = tuple[Any, str, tuple[str | int, ...], str, str]
"""What a check of a TrainingJob's manifests together yields: (manifest the finding is about,
rule, path in it, message, hint)."""


@dataclass(frozen=True)
class Scope:
    """What a check of one manifest may read (``roots``: directory trees, links resolved) and the
    run's other manifests (``index``; None when checked on its own)."""

    roots: tuple[str, ...]
    index: Index | None = None

    def inside(self, path: str | Path) -> bool:
        """Whether ``path``, symbolic links resolved, lies in one of :attr:`roots`."""
        return inside(path, self.roots)


ManifestCheck = Callable[[Manifest, Scope], Iterator[Finding]]
"""Checks one manifest's files, base, templates or engine."""
ContentCheck = Callable[[Manifest], Iterator[Finding]]
"""Reads what a manifest's files hold; run only once its manifest checks found nothing."""
JobCheck = Callable[[Manifest, Callable[[str, str], Manifest | None], Index], Iterator[JobIssue]]
"""Checks a TrainingJob's Model and Dataset together (given a look-up by kind and name)."""


@dataclass(frozen=True)
class EnvironmentChecks:
    """The checks layer 5 runs, one function per concern, in this order."""

    manifest: Sequence[ManifestCheck] = ()
    contents: Sequence[ContentCheck] = ()
    jobs: Sequence[JobCheck] = ()


def inside(path: str | Path, roots: Sequence[str]) -> bool:
    """Whether ``path``, symbolic links resolved, lies in one of the directory trees ``roots``."""
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def scope_of(m: Manifest, allow_outside: Sequence[str | os.PathLike[str]] = (),
             index: Index | None = None) -> Scope:
    """The trees a check of ``m`` may read: its own directory's, the working directory's and
    ``allow_outside``."""
    roots = (os.path.realpath(m.base_dir), os.path.realpath(os.getcwd()),
             *(os.path.realpath(a) for a in allow_outside))
    return Scope(roots, index)


def check_manifest(m: Manifest, checks: EnvironmentChecks, allow_outside: Sequence[str | os.PathLike[str]] = (),
                   index: Index | None = None) -> Iterator[Finding]:
    """Every manifest check on ``m``."""
    scope = scope_of(m, allow_outside, index)
    for check in checks.manifest:
        yield from check(m, scope)


def check_contents(m: Manifest, checks: EnvironmentChecks) -> Iterator[Finding]:
    """Every content check on ``m``: only for a manifest whose files are there and intact."""
    for check in checks.contents:
        yield from check(m)


def check_jobs(manifests: list[Manifest], checks: EnvironmentChecks, index: Index) -> Iterator[Finding]:
    """Every job check on each TrainingJob among ``manifests``, with its Model and Dataset."""
    named: dict[tuple[str, str], Manifest] = {}
    for m in manifests:
        named.setdefault((m.kind, m.name), m)
    for job in manifests:
        if job.kind != "TrainingJob":
            continue
        for check in checks.jobs:
            for target, rule, path, message, hint in check(job, lambda kind, name: named.get((kind, name)), index):
                yield finding_at(target, rule, path, message, hint)
