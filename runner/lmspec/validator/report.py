"""Report formats: text (default), json (versioned), junit, sarif and github.

>>> print(render(lmspec.validate("examples/iris"), "junit"))   # doctest: +SKIP

Every format is a pure function of the report; only :func:`write_github_summary` touches a file.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from .._version import __version__
from ..manifests.findings import Finding, Report
from .registry import RULES

JSON_FORMAT_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://lmspec.io"


def text(report: Report, *, strict: bool = False) -> str:
    lines = []
    for f in report.findings:
        lines.append(f"{f.file}:{f.line}:{f.column}: {f.severity}[{f.rule}] {f.message}")
        if f.pointer:
            lines.append(f"    at {f.pointer}")
        if f.hint:
            lines.append(f"    hint: {f.hint}")
    lines.append(_summary_line(report, strict=strict))
    return "\n".join(lines) + "\n"


def _summary_line(report: Report, *, strict: bool) -> str:
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "valid" if report.exit_code(strict=strict) == 0 else "invalid"
    return (f"{len(report.files)} file(s), {report.documents} document(s): {verdict} "
            f"({n_err} error(s), {n_warn} warning(s))")


def _dumps(doc: dict[str, Any]) -> str:
    import json  # here: the text format, the common case, needs none, and start-up time counts

    return json.dumps(doc, indent=2) + "\n"


def json_(report: Report, *, strict: bool = False) -> str:
    doc = {
        "version": JSON_FORMAT_VERSION,
        "tool": {"name": "lmspec", "version": __version__},
        "valid": report.exit_code(strict=strict) == 0,
        "files": report.files,
        "documents": report.documents,
        "summary": {"errors": len(report.errors), "warnings": len(report.warnings)},
        "findings": [f.to_dict() for f in report.findings],
    }
    return _dumps(doc)


# --- JUnit XML ---------------------------------------------------------------------------------

# Characters XML 1.0 cannot carry at all, not even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(value: str) -> str:
    from xml.sax.saxutils import escape  # imported here: it pulls in urllib.request

    return escape(_XML_INVALID.sub("\ufffd", value))


def _xml_attr(value: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(_XML_INVALID.sub("\ufffd", value))


def _fails(f: Finding, strict: bool) -> bool:
    return f.severity == "error" or strict


def junit(report: Report, *, strict: bool = False) -> str:
    """One ``testsuite`` per file and one ``testcase`` per document; a file that cannot be read
    is one failing ``testcase`` named ``parse``. Each failure lists rule, line, column, pointer
    and message of every finding in the document."""
    by_file: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_file.setdefault(f.file, []).append(f)
    files = list(dict.fromkeys([*report.files, *by_file]))
    suites: list[str] = []
    total_tests = total_failures = 0
    for file in files:
        findings = by_file.get(file, [])
        labels = report.labels.get(file) or []
        cases: list[tuple[str, list[Finding]]] = []
        if labels:
            # Grouped once: scanning the file's findings per document is quadratic in documents.
            by_document: dict[int, list[Finding]] = {}
            for f in findings:
                by_document.setdefault(f.document, []).append(f)
            cases = [(label, by_document.get(i, [])) for i, label in enumerate(labels)]
        # Parse problems stop a file before it yields documents.
        unplaced = [f for f in findings if not labels or f.document >= len(labels)]
        if unplaced or not labels:
            cases.insert(0, ("parse", unplaced))
        body: list[str] = []
        failures = 0
        for name, case_findings in cases:
            failing = [f for f in case_findings if _fails(f, strict)]
            others = [f for f in case_findings if not _fails(f, strict)]
            attrs = f"name={_xml_attr(name)} classname={_xml_attr(file)}"
            if not failing and not others:
                body.append(f"    <testcase {attrs}/>")
                continue
            body.append(f"    <testcase {attrs}>")
            if failing:
                failures += 1
                first = failing[0]
                message = f"{first.line}:{first.column}: [{first.rule}] {first.message}"
                if len(failing) > 1:
                    message += f" (and {len(failing) - 1} more)"
                body.append(f"      <failure message={_xml_attr(message)} type={_xml_attr(first.rule)}>"
                            f"{_xml(_finding_lines(failing))}</failure>")
            if others:
                body.append(f"      <system-out>{_xml(_finding_lines(others))}</system-out>")
            body.append("    </testcase>")
        total_tests += len(cases)
        total_failures += failures
        suites.append(f"  <testsuite name={_xml_attr(file)} tests=\"{len(cases)}\" "
                      f"failures=\"{failures}\" errors=\"0\" skipped=\"0\">")
        suites.extend(body)
        suites.append("  </testsuite>")
    head = (f"<testsuites name=\"lmspec validate\" tests=\"{total_tests}\" "
            f"failures=\"{total_failures}\" errors=\"0\">")
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', head, *suites, "</testsuites>"]) + "\n"


def _finding_lines(findings: list[Finding]) -> str:
    out = []
    for f in findings:
        out.append(f"{f.file}:{f.line}:{f.column}: {f.severity}[{f.rule}] {f.message}")
        if f.pointer:
            out.append(f"    at {f.pointer}")
        if f.hint:
            out.append(f"    hint: {f.hint}")
    return "\n".join(out) + "\n"


# --- SARIF 2.1.0 -------------------------------------------------------------------------------

def artifact_uri(file: str) -> str | None:
    """A file's SARIF ``artifactLocation.uri``: relative to the working directory when it lies
    inside it (GitHub resolves such URIs against the checkout), else an absolute ``file:`` URI;
    None for pseudo-files such as ``<stdin>``."""
    if file.startswith("<"):
        return None
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return path.as_uri()
    from urllib.parse import quote

    parts = PurePath(os.path.normpath(path)).as_posix()
    # Bytes, so a file name that is not valid UTF-8 (kept by Python as lone surrogates) is
    # percent-encoded byte for byte rather than failing to encode.
    return quote(parts.encode("utf-8", "surrogateescape"), safe="/")


def sarif(report: Report, *, strict: bool = False) -> str:
    """SARIF 2.1.0 with every rule of the registry, so ``ruleIndex`` stays stable across runs."""
    rule_ids = list(RULES)
    rule_index = {rid: i for i, rid in enumerate(rule_ids)}
    driver_rules = [
        {
            "id": r.id,
            "name": _pascal(r.id),
            "shortDescription": {"text": r.summary},
            "defaultConfiguration": {"level": r.severity},
            "properties": {"layer": r.layer},
        }
        for r in RULES.values()
    ]
    results = []
    for f in report.findings:
        level = "error" if f.severity == "error" or strict else "warning"
        message = f.message + (f" (at {f.pointer})" if f.pointer else "") + (f". {f.hint}" if f.hint else "")
        result: dict[str, object] = {
            "ruleId": f.rule,
            "level": level,
            "message": {"text": message},
        }
        if f.rule in rule_index:
            result["ruleIndex"] = rule_index[f.rule]
        uri = artifact_uri(f.file)
        if uri is not None:
            location: dict[str, object] = {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri},
                    "region": {"startLine": max(f.line, 1), "startColumn": max(f.column, 1)},
                },
            }
            if f.pointer:
                location["logicalLocations"] = [{"fullyQualifiedName": f.pointer, "kind": "member"}]
            result["locations"] = [location]
        result["partialFingerprints"] = {"lmspecPointer/v1": f"{f.rule}:{f.document}:{f.pointer}"}
        results.append(result)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "lmspec",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": driver_rules,
            }},
            # libyaml counts columns in code points, not SARIF's default UTF-16 code units.
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
    return _dumps(doc)


def _pascal(rule_id: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in rule_id.replace(".", "-").split("-"))


def _relative(file: str) -> str:
    """``file`` relative to the working directory (the checkout, in CI) when it lies inside it."""
    path = Path(file)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            pass
    return file


# --- GitHub Actions ----------------------------------------------------------------------------

def _gh_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(value: str) -> str:
    return _gh_data(value).replace(":", "%3A").replace(",", "%2C")


def github(report: Report, *, strict: bool = False) -> str:
    """Workflow commands (``::error file=F,line=L,col=C,title=RULE::message``), one per finding,
    then the summary line. GitHub shows at most 10 annotations per level per step, so the CLI
    also writes :func:`step_summary` to ``$GITHUB_STEP_SUMMARY``."""
    lines = []
    for f in report.findings:
        level = "error" if f.severity == "error" or strict else "warning"
        message = f.message + (f" (at {f.pointer})" if f.pointer else "") + (f". hint: {f.hint}" if f.hint else "")
        props = f"file={_gh_property(_relative(f.file))},line={f.line},col={f.column},title={_gh_property(f.rule)}"
        lines.append(f"::{level} {props}::{_gh_data(message)}")
    lines.append(_summary_line(report, strict=strict))
    return "\n".join(lines) + "\n"


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def step_summary(report: Report, *, strict: bool = False, limit: int = 500) -> str:
    """A markdown table of every finding (up to ``limit`` rows), for ``$GITHUB_STEP_SUMMARY``."""
    ok = report.exit_code(strict=strict) == 0
    out = [f"### lmspec validate: {'✅ valid' if ok else '❌ invalid'}", "",
           _summary_line(report, strict=strict), ""]
    if report.findings:
        out += ["| Location | Severity | Rule | Pointer | Message |", "|---|---|---|---|---|"]
        for f in report.findings[:limit]:
            out.append(f"| `{_md_cell(f.file)}:{f.line}:{f.column}` | {f.severity} | `{f.rule}` | "
                       f"`{_md_cell(f.pointer) or '/'}` | {_md_cell(f.message)} |")
        if len(report.findings) > limit:
            out.append(f"\n{len(report.findings) - limit} more finding(s) not shown.")
    return "\n".join(out) + "\n"


def write_github_summary(report: Report, *, strict: bool = False) -> bool:
    """Append :func:`step_summary` to ``$GITHUB_STEP_SUMMARY`` if set; True when written."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    # Non-blocking, then checked: a FIFO there would block the run until someone reads it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        fh.write(step_summary(report, strict=strict))
    return True


FORMATS: dict[str, Callable[..., str]] = {
    "text": text, "json": json_, "junit": junit, "sarif": sarif, "github": github,
}


def render(report: Report, fmt: str, *, strict: bool = False) -> str:
    return FORMATS[fmt](report, strict=strict)
