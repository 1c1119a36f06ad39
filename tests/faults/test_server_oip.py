"""Hostile Open Inference Protocol requests against a real server: each must get its own answer
(400 in the protocol's error shape), never a 500, and never fail the requests batched with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lm(start: Any, exports: dict[str, Path]) -> Any:
    return start("tiny", exports["lm"],
                 batching={"maxBatchSize": 32, "maxQueueDelayMicroseconds": 50000},
                 limits={"maxResponseBytes": 200_000})


def ids_body(ids: list[list[int]]) -> dict[str, Any]:
    return {"inputs": [{"name": "input_ids", "datatype": "INT64",
                        "shape": [len(ids), len(ids[0]) if ids else 0],
                        "data": [i for row in ids for i in row]}]}


def concurrently(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return list(await asyncio.gather(*(client.post("/v2/models/tiny/infer", json=b) for b in bodies)))
    return asyncio.run(all_at_once())


def assert_oip_error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert words in body["error"], body


def test_out_of_vocabulary_id_fails_only_its_own_request_in_a_batch(lm: Any) -> None:
    good = ids_body([[1, 2, 3, 4]])
    bad = ids_body([[1, 2, 3, 1000]])
    for _ in range(3):
        answers = concurrently(lm.url, [good] * 10 + [bad] + [good] * 10)
        assert [r.status_code for r in answers] == [200] * 10 + [400] + [200] * 10
        assert_oip_error(answers[10], 400, "vocabulary")
        first = np.asarray(answers[0].json()["outputs"][0]["data"])
        for r in answers[1:10] + answers[11:]:
            assert np.array_equal(np.asarray(r.json()["outputs"][0]["data"]), first)


@pytest.mark.parametrize(("ids", "words"), [
    ([[-1, 2]], "vocabulary"),
    ([[2**63, 1]], "INT64"),
    ([[1] * 300], "context length"),
])
def test_bad_token_ids_are_400(lm: Any, ids: list[list[int]], words: str) -> None:
    assert_oip_error(lm.client.post("/v2/models/tiny/infer", json=ids_body(ids)), 400, words)


def test_empty_sequence_shape_1_0_is_400(lm: Any) -> None:
    body = {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 0], "data": []}]}
    assert_oip_error(lm.client.post("/v2/models/tiny/infer", json=body), 400, "length >= 1")


def test_small_request_with_huge_response_hits_max_response_bytes(lm: Any) -> None:
    # 200 ids ask for 200 × 256 logits: over the 200,000 bytes this server allows.
    assert_oip_error(lm.client.post("/v2/models/tiny/infer", json=ids_body([[1] * 200])), 400,
                     "limits.maxResponseBytes")
    assert lm.client.post("/v2/models/tiny/infer", json=ids_body([[1] * 20])).status_code == 200


LONG = "z\x1b[2J " * 2_000
SECRET = "api_key=sk-live-abcdef"


@pytest.mark.parametrize(("tensor", "output"), [
    ({"name": LONG}, None), ({"name": SECRET}, None),
    ({"datatype": LONG}, None), ({"datatype": SECRET}, None),
    ({"shape": [1] * 3_000}, None),
    ({}, LONG), ({}, SECRET),
])
def test_400s_show_no_more_of_the_request_than_a_short_excerpt(lm: Any, tensor: dict[str, Any],
                                                                output: str | None) -> None:
    body = ids_body([[1, 2]])
    body["inputs"][0].update(tensor)
    if output is not None:
        body["outputs"] = [{"name": output}]
    r = lm.client.post("/v2/models/tiny/infer", json=body)
    assert r.status_code == 400, r.text[:300]
    message = r.json()["error"]
    assert len(message) < 300 and "\x1b" not in message and "z z z z" not in message, message
    assert "sk-live" not in message and "1, 1, 1, 1, 1, 1, 1, 1" not in message, message
