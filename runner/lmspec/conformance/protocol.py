"""The conformance protocol: JSON lines between the harness and an implementation.

One JSON object per line, UTF-8, on the implementation's stdin (commands) and stdout (replies);
stderr is free for the implementation's own logging::

    → {"cmd": "start", "version": 1}
    ← {"ready": true, "version": 1, "implementation": {"name": "x", "version": "1.0"},
       "capabilities": ["findings", "positions"]}
    → {"cmd": "run", "seq": 1, "case": {"id": "...", "documents": [{"file": "...", "source": "..."}]}}
    ← {"seq": 1, "result": {"valid": false, "findings": [{"rule": "...", "pointer": "/spec",
                                                         "line": 3, "column": 1, "severity": "error"}]}}
    ← {"seq": 1, "skipped": true, "reason": "..."}   or   {"seq": 1, "errored": true, "reason": "..."}
    → {"cmd": "stop"}

A case that times out, a crash, or a reply that is not a JSON object of the right shape makes that
case *errored*; the implementation is then restarted for the next case, so one bad case never hangs
or poisons a run.
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

PROTOCOL_VERSION = 1
CAPABILITIES = ("findings", "positions")
"""``findings``: reports rule ids and JSON pointers, so expected findings are compared (otherwise
only verdicts are); ``positions``: also line and column."""

MAX_RESTARTS = 5
"""Restarts after crashes or protocol errors before the remaining cases are all errored."""


class ProtocolError(Exception):
    """The implementation broke the protocol: crashed, timed out, or answered garbage."""


@dataclass
class Started:
    """What the implementation said about itself in its start reply."""

    name: str
    version: str
    capabilities: frozenset[str]
    info: dict[str, Any] = field(default_factory=dict)


def parse_start(reply: Any) -> Started:
    """Check a start reply; raises :class:`ProtocolError` when it is malformed or not ready."""
    if not isinstance(reply, dict) or reply.get("ready") is not True:
        raise ProtocolError(f"start reply is not {{\"ready\": true, ...}}: {_short(reply)}")
    version = reply.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"implementation speaks protocol version {version!r}, the harness {PROTOCOL_VERSION}")
    impl = reply.get("implementation")
    if not isinstance(impl, dict) or not isinstance(impl.get("name"), str):
        raise ProtocolError(f"start reply lacks implementation.name: {_short(reply)}")
    caps = reply.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ProtocolError(f"capabilities must be a list of strings: {_short(caps)}")
    return Started(impl["name"], str(impl.get("version", "")), frozenset(caps), impl)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class Subprocess:
    """An implementation run as a command, spoken to over stdin/stdout.

    >>> impl = Subprocess("python conformance/examples/jsonschema-only/adapter.py")
    >>> impl.start().name
    'jsonschema-only'
    """

    def __init__(self, command: str, *, timeout: float = 10.0, start_timeout: float = 30.0,
                 cwd: str | None = None) -> None:
        self.argv = shlex.split(command)
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.cwd = cwd
        self.started: Started | None = None
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)

    # -- process handling -----------------------------------------------------------------

    def _spawn(self) -> None:
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, cwd=self.cwd)
        except OSError as exc:
            raise ProtocolError(f"cannot start {shlex.join(self.argv)}: {exc}") from None
        self._lines = queue.Queue()
        self._stderr.clear()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        _pump(self._proc.stdout, self._lines.put)
        _pump(self._proc.stderr, lambda b: self._stderr.append(b.decode("utf-8", "replace").rstrip()) if b else None)

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ProtocolError(self._death("stdin closed")) from None

    def _receive(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ProtocolError(f"no reply within {timeout:g} s") from None
        if line is None:
            # Give the process a moment to exit so its status is known.
            time.sleep(0.05)
            raise ProtocolError(self._death("stdout closed"))
        try:
            return json.loads(line)
        except ValueError:
            raise ProtocolError(f"reply is not JSON: {_short(line.decode('utf-8', 'replace').rstrip())}") from None

    def _death(self, what: str) -> str:
        proc = self._proc
        code = proc.poll() if proc is not None else None
        msg = f"implementation exited with status {code}" if code is not None else f"implementation {what}"
        tail = "; ".join(line for line in list(self._stderr)[-3:] if line)
        return f"{msg}" + (f" (stderr: {tail})" if tail else "")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    # -- protocol ---------------------------------------------------------------------------

    def start(self) -> Started:
        self._spawn()
        try:
            self._send({"cmd": "start", "version": PROTOCOL_VERSION})
            self.started = parse_start(self._receive(self.start_timeout))
        except ProtocolError:
            self._kill()
            raise
        return self.started

    def run(self, seq: int, case: dict[str, Any]) -> dict[str, Any]:
        """The implementation's reply to one case; raises :class:`ProtocolError` (after which the
        process has been stopped and will be restarted by the next call)."""
        if self._proc is None:
            if self.restarts >= MAX_RESTARTS:
                raise ProtocolError(f"gave up after {MAX_RESTARTS} restarts")
            self.restarts += 1
            self.start()
        try:
            self._send({"cmd": "run", "seq": seq, "case": case})
            reply = self._receive(self.timeout)
            if not isinstance(reply, dict):
                raise ProtocolError(f"reply is not a JSON object: {_short(reply)}")
            if reply.get("seq") != seq:
                raise ProtocolError(f"reply has seq {reply.get('seq')!r}, expected {seq}")
            return reply
        except ProtocolError:
            self._kill()
            raise

    def stop(self) -> None:
        if self._proc is not None:
            try:
                self._send({"cmd": "stop"})
                self._proc.wait(timeout=2)
            except (ProtocolError, subprocess.TimeoutExpired):
                pass
        self._kill()


def _pump(stream: IO[bytes], put: Callable[[bytes | None], object]) -> None:
    """Forward lines of ``stream`` from a daemon thread; ``None`` marks the end."""
    def loop() -> None:
        try:
            for line in iter(stream.readline, b""):
                put(line)
        except (OSError, ValueError):
            pass
        put(None)
    threading.Thread(target=loop, daemon=True).start()
