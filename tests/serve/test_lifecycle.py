"""Server life: a full queue answers 503/429 with Retry-After, SIGTERM drains in-flight work and
exits 0, and bad configurations stop at startup with a clear message."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def ids_body(n: int = 1) -> dict[str, Any]:
    return {"inputs": [{"name": "input_ids", "shape": [n, 3], "datatype": "INT64",
                        "data": [104, 105, 33] * n}]}


def test_full_queue_rejects_with_retry_after(start: Any, exports: dict[str, Path]) -> None:
    # A long queue delay keeps under-full batches waiting, so the two-slot queue fills for sure;
    # the engine generates one sequence at a time and lets one wait.
    server = start("busy", exports["lm"], protocols=["oip-v2", "openai"],
                   batching={"maxBatchSize": 64, "maxQueueDelayMicroseconds": 300_000,
                             "maxQueueSize": 2},
                   engine={"maxSequences": 1, "maxWaitingSequences": 2},
                   limits={"requestTimeoutSeconds": 60})

    def infer(_: int) -> httpx.Response:
        return server.client.post("/v2/models/busy/infer", json=ids_body())

    def complete(_: int) -> httpx.Response:
        return server.client.post("/v1/completions",
                                  json={"model": "busy", "prompt": "a", "max_tokens": 40,
                                        "temperature": 1.0})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        oip = list(pool.map(infer, range(10)))
        oai = list(pool.map(complete, range(10)))
    for answers, rejected in ((oip, 503), (oai, 429)):
        codes = sorted(r.status_code for r in answers)
        assert set(codes) == {200, rejected}, codes
        assert codes.count(200) >= 2
        for r in answers:
            if r.status_code == rejected:
                assert r.headers["retry-after"] == "1" and "queue full" in str(r.json()["error"])
    assert oai[[r.status_code for r in oai].index(429)].json()["error"]["type"] == "server_error"
    ok = next(r for r in oip if r.status_code == 200).json()["outputs"][0]
    assert ok["shape"] == [1, 3, 256] and ok["datatype"] == "FP32"
    assert server.metric("lmspec_queue_depth", queue="infer") == 0
    assert server.metrics("lmspec_running_sequences", "lmspec_waiting_sequences") == [0, 0]


def test_sigterm_drains_in_flight_requests(start: Any, exports: dict[str, Path]) -> None:
    # One sequence at a time, so the drain has work left when the late request arrives (the
    # engine batches 8 such requests in a fraction of a second) and the 7 waiting in the engine's
    # queue show that accepted-but-queued requests are answered too. Generous grace: on a loaded
    # machine 8 × 200 tokens one after another take tens of seconds.
    server = start("drain", exports["lm"], protocols=["openai"], engine={"maxSequences": 1},
                   server={"gracePeriodSeconds": 150})
    body = {"model": "drain", "prompt": "go", "max_tokens": 200, "temperature": 0}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(server.client.post, "/v1/completions", json=body) for _ in range(8)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
                server.metric("lmspec_requests_in_flight") < 8
                or server.metric("lmspec_time_to_first_token_seconds_count") < 1):
            time.sleep(0.01)
        assert server.metric("lmspec_requests_in_flight") == 8
        server.start_draining(body)
        answers = [f.result() for f in futures]
    assert [r.status_code for r in answers] == [200] * 8
    assert all(r.json()["usage"]["completion_tokens"] == 200 for r in answers)
    assert server.proc.wait(180) == 0


def lmspec_serve(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run([sys.executable, "-m", "lmspec", "serve", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env={**os.environ, **(env or {})})


def test_startup_errors_are_clear(tmp_path: Path, exports: dict[str, Path],
                                  service_manifest: Any) -> None:
    missing = service_manifest(tmp_path / "a", "a", tmp_path / "nowhere")
    r = lmspec_serve(str(missing), "--port", "0")
    assert r.returncode == 2 and "no exported model" in r.stderr and "lmspec run" in r.stderr
    assert "Traceback" not in r.stderr

    keyed = service_manifest(tmp_path / "b", "b", exports["iris"],
                             auth={"apiKeys": [{"env": "LMSPEC_TEST_UNSET_KEYS"}]})
    r = lmspec_serve(str(keyed), "--port", "0")
    assert r.returncode == 2 and "LMSPEC_TEST_UNSET_KEYS is not set" in r.stderr
    filed = service_manifest(tmp_path / "f", "f", exports["iris"],
                             auth={"apiKeys": [{"file": str(tmp_path / "no-such-keys")}]})
    r = lmspec_serve(str(filed), "--port", "0")
    assert r.returncode == 2 and "spec.auth.apiKeys[0]" in r.stderr and "no-such-keys" in r.stderr

    wrong = service_manifest(tmp_path / "c", "c", exports["iris"], protocols=["openai"])
    r = lmspec_serve(str(wrong), "--port", "0")
    assert r.returncode == 2 and "not a causal language model" in r.stderr

    # A copy of the example, never trained: its job's export is absent; the hint names the inputs.
    shutil.copytree(Path(__file__).parents[2] / "examples" / "iris", tmp_path / "iris")
    r = lmspec_serve("iris", "--port", "0", cwd=tmp_path)
    assert r.returncode == 2 and str(tmp_path / "iris" / "runs" / "iris-train" / "export") in r.stderr
    assert "run `lmspec run iris` first" in r.stderr

    invalid = tmp_path / "e.yaml"
    invalid.write_text("apiVersion: lmspec.io/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\n"
                       "spec: {model: {path: p}, batching: {maxBatchSize: 0}}\n")
    r = lmspec_serve(str(invalid))
    assert r.returncode == 1 and "maxBatchSize" in r.stdout + r.stderr and "Traceback" not in r.stderr
