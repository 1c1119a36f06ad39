"""Cluster settings shared by TrainingJobs and InferenceServices: tolerations and Kubernetes
labels. Each kind's module calls these from its own rule."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...manifests.light import Cluster
from ..rule import rule
from ._base import Issue, Path

# The rules of this module: stable ids, severity and summary (the spec documents each id).
CLUSTER_TOLERATION = rule(
    "cluster.toleration",
    "error",
    "semantic",
    "A toleration with operator Exists has a value, or one with operator Equal has no key.",
)
CLUSTER_LABEL = rule(
    "cluster.label",
    "error",
    "semantic",
    "A nodeSelector label or a toleration's key or value is not one Kubernetes accepts (a qualified name, "
    "a label value).",
)


def tolerations(cluster: Cluster | None) -> Iterator[Issue]:
    if cluster is None:
        return
    for i, t in enumerate(cluster.tolerations):
        path: Path = ("spec", "cluster", "tolerations", i)
        if t.operator == "Exists" and t.value is not None:
            yield Issue(CLUSTER_TOLERATION, (*path, "value"),
                   "a toleration with operator Exists matches any value; value must be omitted",
                   "drop value, or use operator: Equal")
        elif t.operator == "Equal" and t.key is None:
            yield Issue(CLUSTER_TOLERATION, path, "a toleration with operator Equal needs a key",
                   "add key (and value), or use operator: Exists to tolerate every taint")


_K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


_K8S_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def k8s_label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (a label key, a taint key), or None:
    ``[prefix/]name``, the name at most 63 alphanumerics, ``-``, ``_`` and ``.``, starting and
    ending alphanumeric, the prefix a DNS subdomain of at most 253 characters."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "the prefix before '/' is empty"
    if prefix and (len(prefix) > 253 or not _K8S_PREFIX.fullmatch(prefix)):
        return f"the prefix {prefix!r} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
    if not name or len(name) > 63 or not _K8S_NAME.fullmatch(name):
        return ("the name must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit")
    return None


def k8s_label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value (empty, or a name as in a label key), or None."""
    if value and (len(value) > 63 or not _K8S_NAME.fullmatch(value)):
        return "a label value is empty or 1 to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


def labels(cluster: Cluster | None) -> Iterator[Issue]:
    """Node labels and taint keys and values, as the Kubernetes API server validates them: a
    character it refuses (a newline, ``$(…)``) must not reach an exported object."""
    if cluster is None:
        return
    for key, value in cluster.node_selector.items():
        at: Path = ("spec", "cluster", "nodeSelector", key)
        if (why := k8s_label_key_problem(key)) is not None:
            yield Issue(CLUSTER_LABEL, at, f"nodeSelector key {key!r} is not a Kubernetes label key: {why}",
                   "use a label the machines carry, such as gpu-type or cloud.google.com/gke-accelerator")
        elif (why := k8s_label_value_problem(value)) is not None:
            yield Issue(CLUSTER_LABEL, at, f"nodeSelector value {value!r} of {key!r} is not a Kubernetes label "
                   f"value: {why}", "use the label's value as the machines carry it")
    for i, t in enumerate(cluster.tolerations):
        path: Path = ("spec", "cluster", "tolerations", i)
        if t.key is not None and (why := k8s_label_key_problem(t.key)) is not None:
            yield Issue(CLUSTER_LABEL, (*path, "key"), f"toleration key {t.key!r} is not a Kubernetes taint key: "
                   f"{why}", "use the taint's key as the machines carry it, such as nvidia.com/gpu")
        if t.value is not None and (why := k8s_label_value_problem(t.value)) is not None:
            yield Issue(CLUSTER_LABEL, (*path, "value"), f"toleration value {t.value!r} is not a Kubernetes "
                   f"taint value: {why}", "use the taint's value as the machines carry it")
