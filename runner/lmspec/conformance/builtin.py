"""lmspec's own validator as a conformance implementation.

The harness calls :class:`Builtin` in-process (no subprocess, no JSON encoding), but it answers
exactly the protocol messages a subprocess would; ``python -m lmspec.conformance.builtin`` speaks
the same messages over stdin/stdout, which is how the protocol path itself is tested.

>>> Builtin().run(1, {"id": "x", "documents": [{"file": "m.yaml", "source": "kind: Model"}]})["result"]["valid"]
False
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .._version import __version__
from ..manifests.document import Document
from ..manifests.findings import Report
from ..validator.core import parse_finding, validate_documents
from ..validator.parse import ParseError, decode, parse_text
from .protocol import PROTOCOL_VERSION, Started, parse_start
from .suite import document_bytes

START_REPLY: dict[str, Any] = {
    "ready": True,
    "version": PROTOCOL_VERSION,
    "implementation": {"name": "lmspec", "version": __version__, "language": "python",
                       "homepage": "https://lmspec.io"},
    "capabilities": ["findings", "positions"],
}


def validate_case(case: dict[str, Any]) -> dict[str, Any]:
    """The ``result`` for one case: every document parsed, then validated together."""
    report = Report()
    docs: list[Document] = []
    for name, raw in document_bytes(case["documents"]):
        report.files.append(name)
        try:
            docs.extend(parse_text(decode(raw, name), name))
        except ParseError as exc:
            report.findings.append(parse_finding(exc))
    validate_documents(docs, report)
    findings = [{"rule": f.rule, "severity": f.severity, "file": f.file, "document": f.document,
                 "pointer": f.pointer, "line": f.line, "column": f.column, "message": f.message}
                for f in report.findings]
    return {"valid": report.ok, "findings": findings}


def respond(message: dict[str, Any]) -> dict[str, Any] | None:
    """The reply to one protocol message (``None`` for ``stop``)."""
    cmd = message.get("cmd")
    if cmd == "start":
        return START_REPLY
    if cmd == "run":
        seq = message.get("seq")
        try:
            return {"seq": seq, "result": validate_case(message["case"])}
        except Exception as exc:  # a crash on one case must not end the run
            return {"seq": seq, "errored": True, "reason": f"{type(exc).__name__}: {exc}"}
    return None


class Builtin:
    """In-process implementation with the same interface as :class:`.protocol.Subprocess`."""

    started: Started | None = None

    def start(self) -> Started:
        self.started = parse_start(respond({"cmd": "start", "version": PROTOCOL_VERSION}))
        return self.started

    def run(self, seq: int, case: dict[str, Any]) -> dict[str, Any]:
        reply = respond({"cmd": "run", "seq": seq, "case": case})
        assert reply is not None
        return reply

    def stop(self) -> None:
        pass


def main() -> None:
    """Serve the protocol on stdin/stdout."""
    for line in sys.stdin:
        reply = respond(json.loads(line))
        if reply is None:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
