"""What the validator reports: findings with a rule id, a severity and an exact position."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]
_SEVERITY_ORDER = {"error": 0, "warning": 1}


def similar(word: str, choices: Iterable[str]) -> str | None:
    """The choice spelt most like ``word``, if any is close (difflib's ratio 0.6 or more): what
    a did-you-mean hint offers."""
    import difflib  # here: only a run that meets a misspelling pays for importing it

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 JSON pointer of a path: ``("spec", "a/b", 0)`` → ``/spec/a~1b/0``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@dataclass(frozen=True)
class Finding:
    """One problem found in one document."""

    rule: str
    """Stable rule id, e.g. ``trainingjob.batch-world-size``."""
    severity: Severity
    file: str
    line: int
    column: int
    pointer: str
    """JSON pointer to the offending node within its document."""
    message: str
    hint: str = ""
    """How to fix it."""
    document: int = 0
    """Index of the document within its file, from 0."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """The outcome of validating a set of manifests."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    documents: int = 0
    labels: dict[str, list[str]] = field(default_factory=dict)
    """File → a label per document in it, in order (``Model/iris-mlp``, or ``document 2`` when
    kind or name is unreadable); used by per-document formats such as JUnit."""
    skipped: list[str] = field(default_factory=list)
    """Files and directories that directory arguments passed over: ``.json`` files, and lmspec's
    own output directories (ending in the path separator)."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def parse_failed(self) -> bool:
        """True when some input could not be read as YAML or JSON at all."""
        return any(f.rule.startswith("parse.") for f in self.findings)

    @property
    def ok(self) -> bool:
        return not self.errors

    def exit_code(self, *, strict: bool = False) -> int:
        """0 valid, 1 invalid (or warnings under ``strict``), 2 unreadable input."""
        if self.parse_failed:
            return 2
        if self.errors or (strict and self.warnings):
            return 1
        return 0

    def sort(self) -> None:
        """Order findings by file (in input order), errors first, then by position."""
        order = {f: i for i, f in enumerate(self.files)}
        self.findings.sort(
            key=lambda f: (order.get(f.file, len(order)), _SEVERITY_ORDER[f.severity],
                           f.document, f.line, f.column, f.rule)
        )

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)
