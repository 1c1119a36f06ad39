"""What a rule is: a stable id with its severity, layer and one-line summary.

>>> MODEL_HEADS = rule("model.heads", "error", "semantic", "Heads do not divide the width.")

Each rule is declared once, where its check lives (the semantic rules in their kind's module of
:mod:`.rules`, the other layers' in :mod:`.registry`); :mod:`.registry` imports them all, so
:data:`RULES` is the whole catalogue once it is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..manifests.findings import Severity

Layer = Literal["parse", "document", "schema", "semantic", "reference", "environment"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    layer: Layer
    summary: str


RULES: dict[str, Rule] = {}
"""Every declared rule by id, in declaration order (the order of the published catalogue)."""


def rule(id: str, severity: Severity, layer: Layer, summary: str) -> str:
    """Declare a rule; returns its id, for the check to name in its findings."""
    if id in RULES:
        raise ValueError(f"rule {id!r} is declared twice")
    RULES[id] = Rule(id, severity, layer, summary)
    return id
