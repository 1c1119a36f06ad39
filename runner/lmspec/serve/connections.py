"""Connection guards under uvicorn's HTTP/1.1 protocol: a deadline for request headers, a
bound on open connections, and a response's head and body written as one (:class:`Coalesced`).

>>> config = uvicorn.Config(app, http=guarded_protocol(header_timeout=10.0, max_connections=1024))

uvicorn closes idle keep-alive connections, but a client that sends half its headers (or
connects and sends nothing) holds a connection and a file descriptor for as long as it likes.
Here every request's headers must arrive within ``header_timeout`` seconds of the connection or
of the previous response (else 408 and close), and connections beyond ``max_connections`` get
503 and are closed at once, so slow clients cannot starve the process of descriptors. Body time
is bounded in the gate (:mod:`.gate`), where the body is read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

# The C parser (httptools), not uvicorn's pure-Python h11: for a small model, parsing and writing
# HTTP in Python is most of what a request costs.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

QUIET_SECONDS = 0.5
"""On shutdown, how long a connection with no request in progress may still send one."""


def _raw(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


class Coalesced:
    """A transport that sends a response's head together with the body that follows it.

    uvicorn writes a response's head and its body separately: two system calls, two TCP
    segments and two wake-ups of the client for every small answer, which on loopback was the
    largest single cost of a small model's request. Here a head is held until the next write
    (the body, written in the same turn of the event loop) and both leave as one; a head with no
    body yet (a stream before its first event) leaves at the end of the loop's turn. Everything
    else is written at once, as before."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is None and bytes(data[:9]) == b"HTTP/1.1 ":
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
            return
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol with a header deadline and a connection bound."""
    late = _raw("408 Request Timeout",
                f"request headers did not arrive within server.headerTimeoutSeconds ({header_timeout:g} s)")
    full = _raw("503 Service Unavailable",
                f"too many open connections (server.maxConnections is {max_connections}); retry later")

    class Guarded(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _quiet: asyncio.TimerHandle | None = None
        _seen: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            coalesced: Any = Coalesced(transport, self.loop)
            super().connection_made(coalesced)
            if len(self.connections) > max_connections:
                transport.write(full)
                transport.close()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._quiet is not None:
                self._quiet.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                self._arm()  # the first bytes of a new request: its headers are now due
            super().data_received(data)
            if self.cycle is not None and self.cycle is not self._seen:
                self._seen = self.cycle  # headers complete: the request runs
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()  # uvicorn's keep-alive timer covers the idle time until the next request

        def shutdown(self) -> None:
            # uvicorn closes a connection with no request in progress at once; but a request may
            # be on its way (a client that just connected, or reuses a kept-alive connection),
            # and closing would lose it. Wait a moment: a request that comes is answered (503
            # while draining, with Connection: close); a silent connection is then closed.
            if self.cycle is None or self.cycle.response_complete:
                if self._quiet is None and not self.transport.is_closing():
                    self._quiet = self.loop.call_later(QUIET_SECONDS, self._close_if_quiet)
                return
            super().shutdown()

        def _close_if_quiet(self) -> None:
            if not self.transport.is_closing():
                HttpToolsProtocol.shutdown(self)

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            self.transport.write(late)
            self.transport.close()

    return Guarded
