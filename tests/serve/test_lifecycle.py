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


def _in_process(export: Path, protocols: list[str]) -> Any:
    """The application of an InferenceService serving ``export``, in this process."""
    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import create_app
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "t"},
        "spec": {"model": {"path": str(export)}, "protocols": protocols}})
    return create_app(service, lambda: load_export(export, service.spec))


def test_503_while_draining_says_when_to_retry(exports: dict[str, Path]) -> None:
    from starlette.testclient import TestClient

    from lmspec.serve.errors import ApiError

    app, state = _in_process(exports["lm"], ["oip-v2", "openai"])
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while not state.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        state.draining = True
        for path, body in [("/v2/models/t/infer", ids_body()), ("/v1/completions", {"model": "t", "prompt": "a"}),
                           ("/v2/models/t/generate", {"text_input": "a"})]:
            r = client.post(path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close", path
        # A request that passed the gate before the drain began, and asks for the model after.
        with pytest.raises(ApiError) as refused:
            state.require_ready()
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"


def test_a_failure_no_handler_answers_is_a_500_in_the_protocols_shape(exports: dict[str, Path]) -> None:
    """An error that escapes a route is answered (and logged), not raised on to the HTTP server,
    which would then close the connection under the client's next request."""
    from starlette.testclient import TestClient

    app, _ = _in_process(exports["iris"], ["oip-v2"])

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.app.add_api_route("/v2/models/t/broken", broken, methods=["POST"])
    app.app.add_api_route("/v1/broken", broken, methods=["POST"])
    with TestClient(app) as client:  # raises what escapes the application
        r = client.post("/v2/models/t/broken", json={})
        assert r.status_code == 500 and r.json() == {"error": "internal server error"}
        r = client.post("/v1/broken", json={})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"


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

    # A copy of the example, never trained (whatever a run left in the checkout): its job's
    # export is absent; the hint names the inputs.
    shutil.copytree(Path(__file__).parents[2] / "examples" / "iris", tmp_path / "iris",
                    ignore=shutil.ignore_patterns("runs", ".lmspec-cache"))
    r = lmspec_serve("iris", "--port", "0", cwd=tmp_path)
    assert r.returncode == 2 and str(tmp_path / "iris" / "runs" / "iris-train" / "export") in r.stderr
    assert "run `lmspec run iris` first" in r.stderr

    invalid = tmp_path / "e.yaml"
    invalid.write_text("apiVersion: lmspec.io/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\n"
                       "spec: {model: {path: p}, batching: {maxBatchSize: 0}}\n")
    r = lmspec_serve(str(invalid))
    assert r.returncode == 1 and "maxBatchSize" in r.stdout + r.stderr and "Traceback" not in r.stderr
