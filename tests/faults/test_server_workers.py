"""A worker killed outright (``kill -9``) under load: the other worker keeps answering every
request, the supervisor replaces the dead one, and the service stays up."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}


def pid_of(r: httpx.Response) -> int:
    return int(r.headers["x-lmspec-worker"])


def test_killed_worker_is_replaced_while_the_other_serves(start: Any, exports: dict[str, Path]) -> None:
    server = start("pair", exports["iris"], server={"workers": 2})
    pids: set[int] = set()
    for _ in range(200):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            pids.add(pid_of(c.get("/v2/health/live")))
        if len(pids) == 2:
            break
    assert len(pids) == 2
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)

    def one(_: int) -> tuple[int, int]:
        # A fresh connection each time: the kernel hands it to a live worker.
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/v2/models/pair/infer", json=BODY)
            return r.status_code, pid_of(r)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(40)))
    assert all(code == 200 for code, _ in answers), answers
    assert victim not in {pid for _, pid in answers}
    server.wait_ready(60)  # readiness again only once the replacement is ready
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= {pid for _, pid in [one(0)]}
    assert len(seen) == 2 and victim not in seen, seen
    assert server.proc.poll() is None
    assert f"(pid {victim}) was killed by SIGKILL; replacing it" in server.output()
