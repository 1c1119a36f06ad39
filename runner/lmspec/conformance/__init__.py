"""The lmspec conformance harness: run the language-neutral suites in ``conformance/`` (one per
API version) against lmspec's own validator or any implementation that speaks the JSON-lines
protocol.

It owns reading the cases (``suite``), the protocol (``protocol``), lmspec's own answers
(``builtin``) and judging and reporting them (``harness``); the cases themselves are data.

>>> from lmspec.conformance import Builtin, load_suite, run_suite
>>> outcomes, _ = run_suite(load_suite("conformance/v1alpha1"), Builtin())
"""

from __future__ import annotations

from .builtin import Builtin
from .harness import Outcome, judge, run_suite
from .protocol import PROTOCOL_VERSION, ProtocolError, Subprocess
from .suite import TIERS, Case, Expected, SuiteError, load_suite, version_suites

__all__ = [
    "PROTOCOL_VERSION",
    "TIERS",
    "Builtin",
    "Case",
    "Expected",
    "Outcome",
    "ProtocolError",
    "Subprocess",
    "SuiteError",
    "judge",
    "load_suite",
    "run_suite",
    "version_suites",
]
