"""The validator, one module per layer, run in this order on every document it can:

    parse      YAML 1.2 / JSON → plain data with a position for every node (``parse``);
               many files on every core, in forked processes (``spread``, for the CLI)
    schema     route by apiVersion/kind, check against the kind's model (``schema``): the
               model's own checks, compiled (``compiled``) and run on pydantic-core with light
               classes in its place (``light``), so validating never imports pydantic
    semantic   rules within and across manifests, with stable ids (``semantic``, ``registry``)
    references names that must resolve to other manifests (``core``)
    environment  with ``check_env``: files exist and match their digests (``core``), and the
               data holds what the Dataset declares (``envdata``, which reads it with numpy)
    report     text, json, junit, sarif, github (``report``), built from ``findings``

It owns every rule about manifests: the runner asserts what these rules guarantee and reports
nothing about manifests itself. The validator never imports torch, deepspeed or a server
framework; ``core`` ties the layers together and is the public API (``validate``, ``load``).
"""

from __future__ import annotations

from .core import Manifest, ManifestSet, ValidationFailed, load, validate, validate_text
from .findings import Finding, Report

__all__ = ["Finding", "Manifest", "ManifestSet", "Report", "ValidationFailed", "load", "validate", "validate_text"]
