"""The validator, one module per layer, run in this order on every document it can:

    parse      YAML 1.2 / JSON → documents with a position for every node (``parse``);
               which files paths, directories and globs name, read into documents (``inputs``);
               many files on every core, in forked processes (``spread``, for the CLI)
    schema     route by apiVersion/kind, check against the kind's model (``schema``): the
               model's own checks, compiled and run on pydantic-core with light classes in its
               place (:mod:`lmspec.manifests.light`), so validating never imports pydantic; a
               document of a version other than the hub is then converted to the hub
               (:mod:`lmspec.conversion`), which the later layers read, and their findings are
               placed back on the document as written (``at``); documents of a deprecated
               version get a warning (``layers``)
    semantic   rules within and across manifests, with stable ids (``registry``): one module
               per kind in ``rules``, looking other manifests up in the run's ``index``
    references names that must resolve to other manifests (``references``)
    environment  with ``env_checks``: the plumbing (``environment``) runs the checks passed to
               it, never importing them: lmspec's own (:mod:`lmspec.preflight`) check that files
               exist, stay inside the project and match their digests, that bases, templates and
               engines are there, that the data holds what the Dataset declares and that a
               TrainingJob's base fits its adapter and data
    report     text, json, junit, sarif, github (``report``), built from the findings

``layers`` runs the layers over parsed documents. What they read and yield (documents,
``Manifest``, ``ManifestSet``, findings and the report) is :mod:`lmspec.manifests`'s. The
validator owns every rule about manifests: the runner asserts what these rules guarantee and
reports nothing about manifests itself. The validator never imports
torch, deepspeed or a server framework; ``core`` is the public API (``validate``, ``load``).
"""

from __future__ import annotations

from ..manifests.findings import Finding, Report
from .core import Manifest, ManifestSet, ValidationFailed, load, validate, validate_text

__all__ = ["Finding", "Manifest", "ManifestSet", "Report", "ValidationFailed", "load", "validate", "validate_text"]
