"""The Open Inference Protocol v2 over a real ``lmspec serve`` process: health, metadata,
inference (equal to ``load_exported(...).predict``), request checks, limits, auth and metrics."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

KEY = "test-key-3f9a"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def server(start: Any, exports: dict[str, Path]) -> Any:
    return start("iris", exports["iris"], key=KEY, env={"IRIS_KEYS": f"other,{KEY}"},
                 auth={"apiKeys": [{"env": "IRIS_KEYS"}]},
                 batching={"maxBatchSize": 8, "maxQueueDelayMicroseconds": 20000},
                 limits={"maxBodyBytes": 4096})


def infer_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "features", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": [v for r in rows for v in r]}], **extra}


def test_health_is_public_and_ready(server: Any) -> None:
    assert httpx.get(server.url + "/v2/health/live").status_code == 200
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(server.url + "/v2/models/iris/ready").status_code == 200
    assert httpx.get(server.url + "/v2/models/iris/versions/1/ready").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"])
def test_protected_endpoints_need_a_valid_key(server: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/v2"), ("GET", "/v2/models/iris"),
                         ("POST", "/v2/models/iris/infer")]:
        r = httpx.request(method, server.url + path, headers=headers, json=infer_body(ROWS))
        assert r.status_code == 401, path
        assert "error" in r.json() and r.headers["www-authenticate"] == "Bearer"


def test_metadata(server: Any) -> None:
    meta = server.client.get("/v2").json()
    assert meta["name"] == "lmspec" and "version" in meta and meta["extensions"] == []
    model = server.client.get("/v2/models/iris").json()
    assert model == {"name": "iris", "versions": ["1"], "platform": "pytorch_lmspec",
                     "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                     "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
                                 {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                                 {"name": "label", "datatype": "BYTES", "shape": [-1]}]}
    assert server.client.get("/v2/models/iris/versions/1").json() == model
    assert server.client.get("/v2/models/iris/versions/7").status_code == 404
    unknown = server.client.get("/v2/models/nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]


def test_served_predictions_equal_the_export(server: Any, exports: dict[str, Path]) -> None:
    from lmspec.model.export import load_exported

    expected = load_exported(exports["iris"]).predict({"features": np.array(ROWS, np.float32)})
    r = server.client.post("/v2/models/iris/infer", json=infer_body(ROWS, id="req-42"),
                           headers={"X-Request-ID": "trace-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-42" and r.headers["x-request-id"] == "trace-1"
    assert body["model_name"] == "iris" and body["model_version"] == "1"
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["datatype"] == "FP32" and out["shape"] == [3, 3]
    got = np.array(out["data"], np.float32).reshape(3, 3)
    np.testing.assert_allclose(got, expected["logits"], rtol=1e-5, atol=1e-5)
    assert got.argmax(1).tolist() == [0, 2, 1]  # setosa, virginica, versicolor: trained weights


def test_nested_data_and_output_selection(server: Any) -> None:
    flat = server.client.post("/v2/models/iris/infer", json=infer_body(ROWS)).json()
    nested = infer_body(ROWS, outputs=[{"name": "logits", "parameters": {"binary_data": False}}])
    nested["inputs"][0]["data"] = ROWS
    r = server.client.post("/v2/models/iris/infer", json=nested)
    assert r.status_code == 200, r.text
    assert "id" not in r.json() and r.headers["x-request-id"]
    assert r.json()["outputs"] == flat["outputs"][:1]
    bad = server.client.post("/v2/models/iris/infer", json=infer_body(ROWS, outputs=[{"name": "probs"}]))
    assert bad.status_code == 400 and "probs" in bad.json()["error"]


@pytest.mark.parametrize("change, words", [
    ({"datatype": "FP64"}, "datatype"),
    ({"datatype": "INT32"}, "datatype"),
    ({"shape": [3, 5]}, "shape"),
    ({"shape": [3]}, "shape"),
    ({"shape": [2, 4]}, "data elements"),
    ({"data": ["a", "b", "c", "d"] * 3}, "data"),
    ({"data": [[1, 2, 3, 4], [1, 2]]}, "data"),
    ({"name": "x"}, "input"),
    ({"shape": [9, 4], "data": [1.0] * 36}, "maxBatchSize"),
])
def test_bad_tensors_get_400(server: Any, change: dict[str, Any], words: str) -> None:
    body = infer_body(ROWS)
    body["inputs"][0].update(change)
    r = server.client.post("/v2/models/iris/infer", json=body)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"} and words in r.json()["error"]


def test_malformed_request_gets_400_in_oip_shape(server: Any) -> None:
    r = server.client.post("/v2/models/iris/infer", content=b'{"inputs": 3}')
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    r = server.client.post("/v2/models/iris/infer", content=b"not json")
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_body_over_the_limit_gets_413(server: Any) -> None:
    big = infer_body([[1.0, 2.0, 3.0, 4.0]] * 8)
    big["pad"] = "x" * 5000
    r = server.client.post("/v2/models/iris/infer", json=big)
    assert r.status_code == 413 and "maxBodyBytes" in r.json()["error"]

    # A chunked body has no Content-Length: the streamed length is checked too.
    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    r = server.client.post("/v2/models/iris/infer", content=chunks())
    assert r.status_code == 413

    # A client that lies in Content-Length is cut off at the limit as well.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                  b"Content-Length: 100\r\nTransfer-Encoding: identity\r\n\r\n" + b" " * 100)
        assert s.recv(100).split(b" ")[1] in (b"400", b"413")


def test_concurrent_requests_share_forward_passes(server: Any) -> None:
    import concurrent.futures

    before_count = server.metric("lmspec_batch_size_count", queue="infer")
    before_rows = server.metric("lmspec_batch_size_sum", queue="infer")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: server.client.post(
            "/v2/models/iris/infer", json=infer_body(ROWS[:1])).status_code, range(16)))
    assert codes == [200] * 16
    passes = server.metric("lmspec_batch_size_count", queue="infer") - before_count
    rows = server.metric("lmspec_batch_size_sum", queue="infer") - before_rows
    assert rows == 16 and passes < 16


def test_metrics_and_openapi(server: Any) -> None:
    text = httpx.get(server.url + "/metrics").text  # public by default
    for name in ("lmspec_requests_total", "lmspec_request_duration_seconds_bucket",
                 "lmspec_queue_duration_seconds_bucket", "lmspec_compute_duration_seconds_bucket",
                 "lmspec_batch_size_bucket", "lmspec_queue_depth", "lmspec_requests_in_flight",
                 "lmspec_time_to_first_token_seconds_bucket"):
        assert name in text, name
    assert 'endpoint="/v2/models/{model}/infer",status="200"' in text
    assert 'endpoint="/v2/models/{model}/infer",status="401"' in text
    assert server.metric("lmspec_requests_in_flight") == 0
    doc = server.client.get("/openapi.json").json()
    assert "/v2/models/{model}/infer" in doc["paths"] and "/v2/health/ready" in doc["paths"]
    # infer validates its own body: the document still describes it, and both path parameters.
    for path, params in (("/v2/models/{model}/infer", ["model"]),
                         ("/v2/models/{model}/versions/{version}/infer", ["model", "version"])):
        op = doc["paths"][path]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] == ["inputs"]
        assert set(body["properties"]["inputs"]["items"]["properties"]) >= {"name", "shape", "datatype", "data"}
        assert [p["name"] for p in op["parameters"] if p["in"] == "path"] == params
    # The version is a path parameter of the versioned routes only, never a query parameter.
    for path, ops in doc["paths"].items():
        for op in ops.values():
            names = [(p["name"], p["in"]) for p in op.get("parameters", [])]
            assert ("version", "query") not in names, path
            assert (("version", "path") in names) == ("{version}" in path), path
    assert server.client.get("/v2/models/iris/versions/2/ready").status_code == 404
    assert server.client.get("/v2/models/iris/versions/1/ready").status_code == 200
    assert server.client.get("/v2/models/iris/ready", params={"version": "2"}).status_code == 200  # not a parameter


def test_triton_http_client_works_unmodified(server: Any, exports: dict[str, Path]) -> None:
    """NVIDIA's own Open Inference Protocol client (tritonclient.http) against lmspec serve."""
    import tritonclient.http as httpclient

    from lmspec.model.export import load_exported

    url = server.url.removeprefix("http://")
    client = httpclient.InferenceServerClient(url=url)
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
    assert client.is_model_ready("iris", headers=headers)
    meta = client.get_model_metadata("iris", headers=headers)
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]

    x = np.asarray(ROWS, dtype=np.float32)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    out = httpclient.InferRequestedOutput("logits", binary_data=False)
    result = client.infer("iris", [inp], outputs=[out], request_id="triton-1", headers=headers)
    assert result.get_response()["id"] == "triton-1"
    expected = load_exported(exports["iris"]).predict({"features": x})["logits"]
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=0, atol=1e-5)
    client.close()


def test_classifier_returns_labels_and_probabilities_with_the_logits(server: Any) -> None:
    meta = server.client.get("/v2/models/iris").json()
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    r = server.client.post("/v2/models/iris/infer", json=infer_body(ROWS))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    logits = np.array(out["logits"]["data"], np.float32).reshape(3, 3)
    probs = np.array(out["probabilities"]["data"], np.float32).reshape(3, 3)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert out["label"] == {"name": "label", "datatype": "BYTES", "shape": [3],
                            "data": ["setosa", "virginica", "versicolor"]}

    # top_k, per output: the k most probable classes, most probable first.
    body = infer_body(ROWS, outputs=[{"name": "label", "parameters": {"top_k": 2}},
                                     {"name": "probabilities", "parameters": {"top_k": 2}}])
    r = server.client.post("/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text
    label, top = r.json()["outputs"]
    assert label["shape"] == [3, 2] and top["shape"] == [3, 2]
    assert label["data"][0::2] == ["setosa", "virginica", "versicolor"]
    classes = ["setosa", "versicolor", "virginica"]
    for row in range(3):
        names, values = label["data"][2 * row:2 * row + 2], top["data"][2 * row:2 * row + 2]
        assert values[0] >= values[1]
        for name, value in zip(names, values, strict=True):
            assert value == pytest.approx(float(probs[row, classes.index(name)]), rel=1e-5)
    for k in (0, 4, "2"):
        bad = infer_body(ROWS, outputs=[{"name": "label", "parameters": {"top_k": k}}])
        r = server.client.post("/v2/models/iris/infer", json=bad)
        assert r.status_code == 400 and "top_k" in r.json()["error"], r.text
    logits_only = infer_body(ROWS, outputs=[{"name": "logits", "parameters": {"top_k": 2}}])
    r = server.client.post("/v2/models/iris/infer", json=logits_only)
    assert r.status_code == 400 and "top_k" in r.json()["error"], r.text


def test_a_lone_request_runs_on_the_loop_and_concurrent_ones_batch_in_the_compute_thread(
        exports: dict[str, Path]) -> None:
    """In one process, the server's wiring of the batcher: a short pass for the only request in
    flight runs on the event loop's thread; while other requests are in flight, passes go to
    the compute thread and batch."""
    import threading
    import time

    from starlette.testclient import TestClient

    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import LONE_INLINE_BELOW, create_app
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "iris"},
        "spec": {"model": {"path": str(exports["iris"])}, "protocols": ["oip-v2"],
                 "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 20000}}})
    app, state = create_app(service, lambda: load_export(exports["iris"], service.spec))
    passes: list[tuple[str, int]] = []  # (thread, rows) of every forward pass
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while not state.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.loaded is not None
        predictor = state.loaded.require_predictor()
        predict = predictor.predict

        def recorded(inputs: dict[str, Any]) -> dict[str, Any]:
            # Longer than a pass the loop would always take, shorter than a lone one's bound.
            time.sleep(LONE_INLINE_BELOW / 3)
            passes.append((threading.current_thread().name, len(inputs["features"])))
            return predict(inputs)

        predictor.predict = recorded  # type: ignore[method-assign]

        def one() -> None:
            assert client.post("/v2/models/iris/infer", json=infer_body(ROWS[:1])).status_code == 200

        for _ in range(4):
            one()
        lone_thread = passes[-1][0]
        assert not lone_thread.startswith("lmspec-compute"), passes

        batched = []
        for _ in range(10):  # requests fired together overlap in flight (almost always at once)
            passes.clear()
            together = threading.Barrier(16)

            def fire(barrier: threading.Barrier = together) -> None:
                barrier.wait()
                one()

            workers = [threading.Thread(target=fire) for _ in range(16)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            batched = [p for p in passes if p[0].startswith("lmspec-compute") and p[1] > 1]
            if batched:
                break
        assert batched, passes

        passes.clear()
        for _ in range(4):  # alone again: back on the loop
            one()
        assert passes[-1][0] == lone_thread, passes
