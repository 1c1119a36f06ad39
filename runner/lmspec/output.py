"""Report formats: text (default) and json (versioned)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ._version import __version__
from .findings import Report

JSON_FORMAT_VERSION = 1


def text(report: Report, *, strict: bool = False) -> str:
    lines = []
    for f in report.findings:
        lines.append(f"{f.file}:{f.line}:{f.column}: {f.severity}[{f.rule}] {f.message}")
        if f.pointer:
            lines.append(f"    at {f.pointer}")
        if f.hint:
            lines.append(f"    hint: {f.hint}")
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "valid" if report.exit_code(strict=strict) == 0 else "invalid"
    lines.append(f"{len(report.files)} file(s), {report.documents} document(s): {verdict} "
                 f"({n_err} error(s), {n_warn} warning(s))")
    return "\n".join(lines) + "\n"


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
    return json.dumps(doc, indent=2) + "\n"


FORMATS: dict[str, Callable[..., str]] = {"text": text, "json": json_}


def render(report: Report, fmt: str, *, strict: bool = False) -> str:
    return FORMATS[fmt](report, strict=strict)
