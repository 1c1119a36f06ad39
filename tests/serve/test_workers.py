"""Several worker processes on one socket (``server.workers: 2``): correct predictions from both
workers, readiness only once every worker is ready, metrics summed over the workers, a drain of
every worker on SIGTERM (a killed worker's replacement is in tests/faults)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
INFER_OK = {"endpoint": "/v2/models/{model}/infer", "status": "200"}


def infer_body(rows: list[list[float]]) -> dict[str, Any]:
    return {"inputs": [{"name": "features", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": [v for r in rows for v in r]}]}


def worker(r: Any) -> int:  # an httpx or a TestClient response
    return int(r.headers["x-lmspec-worker"])


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def clients_on_each_worker(url: str, per_worker: int, workers: int = 2) -> list[httpx.Client]:
    """Keep-alive clients, ``per_worker`` connected to each worker: which worker accepts a new
    connection is the kernel's choice, so connect until every worker has its share."""
    kept: dict[int, list[httpx.Client]] = {}
    for _ in range(300):
        # A request may wait behind others for the worker's one sequence slot, each a long
        # generation: minutes on a loaded machine, so the read timeout is generous.
        client = httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=600))
        pid = worker(client.get("/v2/health/live"))
        if len(kept.setdefault(pid, [])) < per_worker:
            kept[pid].append(client)
        else:
            client.close()
        if len(kept) == workers and all(len(c) == per_worker for c in kept.values()):
            return [c for cs in kept.values() for c in cs]
    raise AssertionError(f"connections did not reach every worker: {list(kept)}")


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


def metrics_dir(output: str) -> Path:
    found = re.search(r"Prometheus multiprocess files in (\S+)\)", output)
    assert found, output
    return Path(found.group(1))


@pytest.fixture(scope="module")
def pair(start: Any, exports: dict[str, Path]) -> Any:
    return start("pair", exports["iris"], server={"workers": 2},
                 batching={"maxBatchSize": 8, "maxQueueDelayMicroseconds": 2000})


def test_ready_means_every_worker_is_ready(exports: dict[str, Path]) -> None:
    """In one process: a worker whose own model is ready still answers 503 to readiness probes
    while another worker is loading, and serves its own requests meanwhile."""
    import multiprocessing

    from starlette.testclient import TestClient

    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import create_app
    from lmspec.serve.state import Peers
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "iris"},
        "spec": {"model": {"path": str(exports["iris"])}, "server": {"workers": 2}}})
    flags = multiprocessing.get_context("spawn").RawArray("b", 2)
    peers = Peers(flags=flags, index=0, pid=os.getpid(), supervisor=os.getppid())
    app, state = create_app(service, lambda: load_export(exports["iris"]), peers=peers)
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while not state.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.ready and list(flags) == [1, 0]
        r = client.get("/v2/health/ready")
        assert r.status_code == 503 and "other workers" in r.json()["error"]
        assert client.get("/v2/models/iris/ready").status_code == 503
        answer = client.post("/v2/models/iris/infer", json=infer_body(ROWS))
        assert answer.status_code == 200 and worker(answer) == os.getpid()
        flags[1] = 1
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2/models/iris/ready").status_code == 200


@pytest.mark.integration
def test_two_workers_serve_the_export(pair: Any, exports: dict[str, Path]) -> None:
    from lmspec.model.export import load_exported

    expected = load_exported(exports["iris"]).predict({"features": np.array(ROWS, np.float32)})
    clients = clients_on_each_worker(pair.url, 2)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        answers = [r for rs in pool.map(
            lambda c: [c.post("/v2/models/pair/infer", json=infer_body(ROWS)) for _ in range(5)],
            clients) for r in rs]
    for c in clients:
        c.close()
    assert [r.status_code for r in answers] == [200] * 20
    for r in answers:
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(3, 3)
        np.testing.assert_allclose(got, expected["logits"], rtol=1e-5, atol=1e-5)
    pids = {worker(r) for r in answers}
    assert len(pids) == 2 and pair.proc.pid not in pids
    if sys.platform == "linux":
        assert {parent_of(pid) for pid in pids} == {pair.proc.pid}


@pytest.mark.integration
def test_metrics_add_up_over_workers(pair: Any) -> None:
    before = sample(httpx.get(pair.url + "/metrics").text, "lmspec_requests_total", **INFER_OK)
    clients = clients_on_each_worker(pair.url, 1)
    served: dict[int, int] = {}
    for i in range(12):
        r = clients[i % 2].post("/v2/models/pair/infer", json=infer_body(ROWS[:1]))
        assert r.status_code == 200
        served[worker(r)] = served.get(worker(r), 0) + 1
    for c in clients:
        c.close()
    assert len(served) == 2, served  # each worker counted only part of them
    scraped_by: set[int] = set()
    for _ in range(200):  # new connections until each worker has answered a scrape
        r = httpx.get(pair.url + "/metrics")
        scraped_by.add(worker(r))
        assert sample(r.text, "lmspec_requests_total", **INFER_OK) == before + 12, r.text
        assert sample(r.text, "lmspec_batch_size_sum", queue="infer") >= before + 12
        assert sample(r.text, "lmspec_ready") == 1
        assert sample(r.text, "lmspec_requests_in_flight") == 0
        assert sample(r.text, "lmspec_queue_depth", queue="infer") == 0
        if len(scraped_by) == 2:
            break
    assert len(scraped_by) == 2


@pytest.mark.integration
def test_not_ready_until_all_workers_are(exports: dict[str, Path], service_manifest: Any,
                                         tmp_path: Path) -> None:
    """From the first moment the port accepts: once readiness says 200, no request gets 503."""
    manifest = service_manifest(tmp_path, "boot", exports["iris"], server={"workers": 2})
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", str(manifest), "--port", "0"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"listening on (http://\S+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        url = found.group(1)
        ready_at: list[float] = []
        probes: list[int] = []
        infers: list[tuple[float, int, str]] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                r = httpx.get(url + "/v2/health/ready", timeout=30)
                probes.append(r.status_code)
                if r.status_code == 200 and not ready_at:
                    ready_at.append(time.monotonic())
                time.sleep(0.01)

        def infer() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                r = httpx.post(url + "/v2/models/boot/infer", json=infer_body(ROWS), timeout=30)
                infers.append((sent, r.status_code, r.headers.get("x-lmspec-worker", "")))

        threads = [threading.Thread(target=f) for f in (probe, infer, infer)]
        for t in threads:
            t.start()
        while (not ready_at or time.monotonic() < ready_at[0] + 1.0) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        assert ready_at, log.read_text()
        assert 503 in probes  # the loading phase was observed
        after = [(code, pid) for sent, code, pid in infers if sent > ready_at[0]]
        assert after and all(code == 200 for code, _ in after), after
        assert len({pid for _, pid in after}) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


@pytest.mark.integration
def test_sigterm_drains_every_worker(start: Any, exports: dict[str, Path]) -> None:
    # One sequence at a time per worker: three long generations each, in flight for a while (long
    # enough that the first is still running when the last arrives, on a busy machine too).
    server = start("drain2", exports["lm-long"], protocols=["openai"], limits={"maxTokens": 600},
                   engine={"maxSequences": 1},
                   server={"workers": 2, "gracePeriodSeconds": 120})
    body = {"model": "drain2", "prompt": "go", "max_tokens": 600, "temperature": 0}
    clients = clients_on_each_worker(server.url, 3)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(c.post, "/v1/completions", json=body) for c in clients]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sample(
                httpx.get(server.url + "/metrics").text, "lmspec_requests_in_flight") < 6:
            time.sleep(0.01)
        assert sample(httpx.get(server.url + "/metrics").text, "lmspec_requests_in_flight") == 6
        server.start_draining(body)
        answers = [f.result() for f in futures]
    for c in clients:
        c.close()
    assert [r.status_code for r in answers] == [200] * 6
    assert all(r.json()["usage"]["completion_tokens"] == 600 for r in answers)
    assert len({worker(r) for r in answers}) == 2
    assert server.proc.wait(60) == 0
    output = server.output()
    assert output.count("draining 3 request(s)") == 2, output
    assert "all workers stopped" in output and not metrics_dir(output).exists()
