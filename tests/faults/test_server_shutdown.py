"""SIGTERM under load: clients on kept-alive and fresh connections send requests as fast as they
can while the server drains. Every request the server accepted is answered (200, or 503 once
draining); a client may be refused a connection, which it can retry, but none is reset."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BODY = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                               "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()
REQUEST = (b"POST /v2/models/drain/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


async def client(port: int, tally: dict[str, int], until: float) -> None:
    """Requests on one connection until it closes, then a new connection, until ``until``."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until:
                writer.write(REQUEST)
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = re.search(rb"(?i)content-length: (\d+)", head)
                assert length is not None
                await reader.readexactly(int(length.group(1)))
                status = head.split()[1].decode()
                tally[status] = tally.get(status, 0) + 1
                if b"connection: close" in head.lower():
                    break
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            tally["lost"] += 1  # the request was sent and no answer came
        finally:
            writer.close()


def test_sigterm_under_load_answers_every_accepted_request(start: Any, exports: dict[str, Path]) -> None:
    server = start("drain", exports["iris"], server={"gracePeriodSeconds": 10})
    port = int(server.url.rsplit(":", 1)[1])
    tally = {"lost": 0, "refused": 0}

    async def load() -> None:
        until = time.monotonic() + 3
        clients = [asyncio.ensure_future(client(port, tally, until)) for _ in range(60)]
        await asyncio.sleep(1)
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*clients)

    asyncio.run(load())
    assert server.proc.wait(30) == 0
    assert tally["lost"] == 0, tally
    assert tally.get("200", 0) > 0 and tally.get("503", 0) > 0, tally


def test_slow_body_does_not_hold_the_drain(start: Any, exports: dict[str, Path]) -> None:
    import socket

    server = start("slowbody", exports["iris"], server={"gracePeriodSeconds": 60, "bodyTimeoutSeconds": 60})
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(REQUEST.replace(b"/drain/", b"/slowbody/")[:-10])  # all but the last 10 bytes
        time.sleep(0.5)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        answer = b""
        while chunk := s.recv(65536):  # the server closes the connection after its answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 503") and b"shutting down" in answer, answer
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 20  # not the 60 s grace period
