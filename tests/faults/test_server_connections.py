"""Slow and idle clients against a real server: half-sent headers and slow bodies are cut off
after ``server.headerTimeoutSeconds`` / ``bodyTimeoutSeconds`` (408), and connections beyond
``server.maxConnections`` are refused with 503 instead of using up file descriptors. Also on this
server (one process start less): outputs that overflow are a 400, not a 500."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

BODY = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                               "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()


@pytest.fixture(scope="module")
def iris(start: Any, exports: dict[str, Path]) -> Any:
    return start("iris", exports["iris"],
                 server={"headerTimeoutSeconds": 1, "bodyTimeoutSeconds": 1, "maxConnections": 20},
                 batching={"maxBatchSize": 32, "maxQueueDelayMicroseconds": 50000})


def test_finite_inputs_with_overflowing_outputs_are_400_not_500(iris: Any) -> None:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                        "data": [3e38, -3e38, 3e38, -3e38]}]}
    r = iris.client.post("/v2/models/iris/infer", json=body)
    assert r.status_code == 400 and set(r.json()) == {"error"} and "not finite" in r.json()["error"], r.text
    ok = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
    assert iris.client.post("/v2/models/iris/infer", json=ok).status_code == 200


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def infer(url: str) -> bytes:
    with connect(url) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"connection: close\r\ncontent-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
        return read_all(s)


def test_half_sent_headers_are_cut_off_with_408(iris: Any) -> None:
    started = time.monotonic()
    with connect(iris.url) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\n")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"headerTimeoutSeconds" in answer
    assert time.monotonic() - started < 8


def test_silent_connection_is_closed(iris: Any) -> None:
    with connect(iris.url) as s:
        assert read_all(s).startswith(b"HTTP/1.1 408")


def test_slow_body_is_cut_off_with_408(iris: Any) -> None:
    with connect(iris.url) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY[:10])
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"bodyTimeoutSeconds" in answer


def test_slow_connections_beyond_max_connections_get_503_and_do_not_starve_clients(iris: Any) -> None:
    slow = [connect(iris.url) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
        time.sleep(0.3)
        refused = 0
        for _ in range(20):
            with connect(iris.url) as s:
                answer = read_all(s)
            refused += answer.startswith(b"HTTP/1.1 503") and b"maxConnections" in answer
        assert refused == 20
        # The held ones are cut off by the header deadline; then a real client is served.
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = infer(iris.url)
            except ConnectionResetError:  # refused while the slow ones still held every slot
                answer = b""
            if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        for s in slow:
            s.close()
