"""Layer 3: the semantic rules, one module per kind they check.

``model``, ``dataset``, ``trainingjob`` and ``inferenceservice`` hold the rules of each kind (a
rule that looks at other manifests sits with the kind that names them: a TrainingJob's Model and
Dataset); ``cluster`` holds the checks of cluster settings both TrainingJobs and InferenceServices
call. A rule registers with ``@check(kind)``; importing the modules below is what registers them,
in this order, which is the order their findings come in before sorting.

Adding a rule: its id (declared with :func:`..rule.rule`) and its function in its kind's module, its
section in ``spec/v1alpha1/rules.md``, and its cases (``tests/validator/rule_cases.py`` and the
conformance suite).
"""

from __future__ import annotations

from ..index import Index
from . import dataset, inferenceservice, model, trainingjob
from ._base import CHECKS, FORMATS_BY_SUFFIX, Issue, Path, check, column_dtypes, run_checks, source_format
from .cluster import k8s_label_key_problem, k8s_label_value_problem

__all__ = [
    "CHECKS",
    "FORMATS_BY_SUFFIX",
    "Index",
    "Issue",
    "Path",
    "check",
    "column_dtypes",
    "dataset",
    "inferenceservice",
    "k8s_label_key_problem",
    "k8s_label_value_problem",
    "model",
    "run_checks",
    "source_format",
    "trainingjob",
]
