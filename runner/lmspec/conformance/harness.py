"""Run the suite against an implementation and judge each reply.

>>> outcomes, started = run_suite(load_suite("conformance/v1alpha1"), Builtin())
>>> all(o.status == "pass" for o in outcomes)
True

A reply *matches* a case when:

1. it is a ``result`` (``skipped`` and ``errored`` replies are counted as such);
2. its ``valid`` equals the case's ``valid``;
3. with the ``findings`` capability, every expected finding is matched by a distinct reported
   finding with the same ``rule`` and, where the expectation gives them, the same ``pointer``,
   ``file``, ``document`` and ``severity`` — and, with the ``positions`` capability, ``line`` and
   ``column``;
4. with ``findings``, no unmatched reported finding is of one of the case's ``rules`` (so a
   near-miss case proves a rule does not fire), and none is an error unless the case sets
   ``allowOtherFindings``. Unexpected warnings of other rules are tolerated.

Findings of :data:`DEPRECATED_RULE` are left out before judging, unless the case names that rule
(in ``rules`` or an expected finding): implementations may warn on a deprecated version, and
the suite of a deprecated version stays the same whether they do or not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.etree import ElementTree as ET

from .. import versions
from .protocol import ProtocolError, Started
from .suite import TIERS, Case, Expected

Status = str  # "pass" | "fail" | "skip" | "error"

DEPRECATED_RULE = "document.deprecated-version"
"""The warning an implementation may give on every document of a deprecated version."""


class Implementation(Protocol):
    started: Started | None

    def start(self) -> Started: ...
    def run(self, seq: int, case: dict[str, Any]) -> dict[str, Any]: ...
    def stop(self) -> None: ...


@dataclass
class Outcome:
    case: Case
    status: Status
    problems: list[str] = field(default_factory=list)
    """Why the case failed, errored or was skipped, one line each."""
    reply: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.case.id, "version": self.case.version, "tier": self.case.tier,
                "status": self.status,
                "problems": self.problems, "seconds": round(self.seconds, 4),
                "reply": self.reply}


def _finding_errors(f: Any) -> str | None:
    if not isinstance(f, dict):
        return "a finding is not an object"
    if not isinstance(f.get("rule"), str):
        return "a finding has no string 'rule'"
    for key in ("pointer", "file", "severity"):
        if key in f and not isinstance(f[key], str):
            return f"a finding's {key!r} is not a string"
    for key in ("line", "column", "document"):
        if key in f and (not isinstance(f[key], int) or isinstance(f[key], bool)):
            return f"a finding's {key!r} is not an integer"
    return None


def judge(case: Case, reply: dict[str, Any], capabilities: frozenset[str]) -> Outcome:
    """Compare one reply with the case's expectations."""
    if reply.get("skipped") is True:
        return Outcome(case, "skip", [str(reply.get("reason", "skipped"))], reply)
    if reply.get("errored") is True:
        return Outcome(case, "error", [str(reply.get("reason", "errored"))], reply)
    result = reply.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("valid"), bool):
        return Outcome(case, "error", ["malformed reply: no result.valid boolean"], reply)
    findings = result.get("findings", [])
    if not isinstance(findings, list):
        return Outcome(case, "error", ["malformed reply: result.findings is not a list"], reply)
    for f in findings:
        if (why := _finding_errors(f)) is not None:
            return Outcome(case, "error", [f"malformed reply: {why}"], reply)
    if DEPRECATED_RULE not in case.rules and all(e.rule != DEPRECATED_RULE for e in case.findings):
        findings = [f for f in findings if f["rule"] != DEPRECATED_RULE]

    problems = []
    if result["valid"] != case.valid:
        problems.append(f"expected {'valid' if case.valid else 'invalid'}, "
                        f"got {'valid' if result['valid'] else 'invalid'}")
    if "findings" in capabilities:
        positions = "positions" in capabilities
        unmatched = list(findings)
        for exp in case.findings:
            hit = next((f for f in unmatched if _matches(exp, f, positions)), None)
            if hit is None:
                near = [f for f in unmatched if f.get("rule") == exp.rule]
                got = "; got " + ", ".join(_describe(f) for f in near) if near else ""
                problems.append(f"missing finding: {exp.describe()}{got}")
            else:
                unmatched.remove(hit)
        for f in unmatched:
            if f["rule"] in case.rules:
                problems.append(f"unexpected finding of an exercised rule: {_describe(f)}")
            elif f.get("severity", "error") == "error" and not case.allow_other_findings:
                problems.append(f"unexpected error: {_describe(f)}")
    if problems and not findings:
        problems.append("the implementation reported no findings")
    elif problems:
        problems.append("reported: " + "; ".join(_describe(f) for f in findings))
    return Outcome(case, "fail" if problems else "pass", problems, reply)


def _matches(exp: Expected, f: dict[str, Any], positions: bool) -> bool:
    checks: list[tuple[Any, Any]] = [(exp.rule, f.get("rule")), (exp.pointer, f.get("pointer")),
                                     (exp.file, f.get("file")), (exp.document, f.get("document", 0)),
                                     (exp.severity, f.get("severity"))]
    if positions:
        checks += [(exp.line, f.get("line")), (exp.column, f.get("column"))]
    return all(want is None or want == got for want, got in checks)


def _describe(f: dict[str, Any]) -> str:
    out = str(f.get("rule"))
    if f.get("file"):
        out += f" in {f['file']}"
        if f.get("document"):
            out += f" document {f['document']}"
    if "pointer" in f:
        out += f" at {f['pointer'] or '(root)'}"
    if "line" in f:
        out += f" line {f['line']} column {f.get('column')}"
    if f.get("severity") and f.get("severity") != "error":
        out += f" ({f['severity']})"
    return out


def run_suite(cases: list[Case], impl: Implementation) -> tuple[list[Outcome], Started | None]:
    """Start the implementation, run every case, stop it. Never raises for a bad implementation:
    a failed start errors every case."""
    try:
        started = impl.start()
    except ProtocolError as exc:
        return [Outcome(c, "error", [f"implementation did not start: {exc}"]) for c in cases], None
    outcomes = []
    try:
        for seq, case in enumerate(cases, 1):
            t0 = time.perf_counter()
            try:
                reply = impl.run(seq, case.wire())
            except ProtocolError as exc:
                outcome = Outcome(case, "error", [str(exc)])
            else:
                outcome = judge(case, reply, impl.started.capabilities if impl.started else started.capabilities)
            outcome.seconds = time.perf_counter() - t0
            outcomes.append(outcome)
    finally:
        impl.stop()
    return outcomes, started


# -- reports ----------------------------------------------------------------------------------

STATUSES = ("pass", "fail", "skip", "error")


def summary(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """Counts per tier and status, tiers in suite order."""
    table: dict[str, dict[str, int]] = {}
    for tier in TIERS:
        rows = [o for o in outcomes if o.case.tier == tier]
        if rows:
            table[tier] = {s: sum(o.status == s for o in rows) for s in STATUSES}
    return table


def by_version(outcomes: list[Outcome]) -> dict[str, list[Outcome]]:
    """Outcomes grouped by the API version of their suite, in the order they were run."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.case.version, []).append(o)
    return groups


def failed(outcomes: list[Outcome]) -> bool:
    return any(o.status in ("fail", "error") for o in outcomes)


def text(outcomes: list[Outcome], started: Started | None) -> str:
    lines = []
    for o in outcomes:
        if o.status == "pass":
            continue
        lines.append(f"{o.status.upper()} {o.case.id}  ({o.case.origin})")
        lines.append(f"    {o.case.description}")
        lines += [f"    {p}" for p in o.problems]
    if lines:
        lines.append("")
    if started is not None:
        caps = ", ".join(sorted(started.capabilities)) or "verdicts only"
        lines.append(f"implementation: {started.name} {started.version} (compared: {caps})")
    for version, rows in by_version(outcomes).items():
        if version:
            lines.append(f"{versions.GROUP}/{version}")
        lines.append(f"{'tier':<12}{'pass':>6}{'fail':>6}{'skip':>6}{'error':>7}")
        total = dict.fromkeys(STATUSES, 0)
        for tier, counts in summary(rows).items():
            lines.append(f"{tier:<12}{counts['pass']:>6}{counts['fail']:>6}{counts['skip']:>6}{counts['error']:>7}")
            for s in STATUSES:
                total[s] += counts[s]
        lines.append(f"{'total':<12}{total['pass']:>6}{total['fail']:>6}{total['skip']:>6}{total['error']:>7}")
    return "\n".join(lines) + "\n"


def json_(outcomes: list[Outcome], started: Started | None) -> str:
    doc = {
        "version": 1,
        "implementation": None if started is None else {
            "name": started.name, "version": started.version,
            "capabilities": sorted(started.capabilities)},
        "summary": summary(outcomes),
        "versions": {version: {"summary": summary(rows), "ok": not failed(rows)}
                     for version, rows in by_version(outcomes).items()},
        "ok": not failed(outcomes),
        "cases": [o.to_dict() for o in outcomes],
    }
    return json.dumps(doc, indent=2) + "\n"


def junit(outcomes: list[Outcome], started: Started | None) -> str:
    name = f"lmspec-conformance ({started.name})" if started else "lmspec-conformance"
    root = ET.Element("testsuites", name=name)
    for version, group in by_version(outcomes).items():
        _junit_version(root, version, group)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _junit_version(root: ET.Element, version: str, outcomes: list[Outcome]) -> None:
    prefix = f"{version}/" if version else ""
    for tier, counts in summary(outcomes).items():
        rows = [o for o in outcomes if o.case.tier == tier]
        suite = ET.SubElement(root, "testsuite", name=prefix + tier, tests=str(len(rows)),
                              failures=str(counts["fail"]), errors=str(counts["error"]),
                              skipped=str(counts["skip"]),
                              time=f"{sum(o.seconds for o in rows):.3f}")
        for o in rows:
            classname = f"conformance.{version}.{tier}" if version else f"conformance.{tier}"
            tc = ET.SubElement(suite, "testcase", classname=classname, name=o.case.id,
                               file=o.case.origin.split("#")[0], time=f"{o.seconds:.4f}")
            body = "\n".join(o.problems)
            if o.status == "fail":
                ET.SubElement(tc, "failure", message=o.problems[0] if o.problems else "").text = body
            elif o.status == "error":
                ET.SubElement(tc, "error", message=o.problems[0] if o.problems else "").text = body
            elif o.status == "skip":
                ET.SubElement(tc, "skipped", message=body)


FORMATS = {"text": text, "json": json_, "junit": junit}
