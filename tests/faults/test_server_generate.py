"""Hostile language-model requests against a real server's OpenAI-compatible routes: each gets
its own answer (400 with an OpenAI error naming the problem, or a correct 200), never a 500 or
an empty stream, and never fails the requests generated alongside it. SIGTERM while streams run
lets every accepted request finish."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lm(start: Any, exports: dict[str, Path]) -> Any:
    return start("tinygen", exports["lm"], protocols=["oip-v2", "openai"],
                 generation={"maxTokens": 8, "temperature": 0.0})


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "tinygen", "max_tokens": 8, "temperature": 0, **fields}


def concurrently(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return list(await asyncio.gather(*(client.post("/v1/completions", json=b) for b in bodies)))
    return asyncio.run(all_at_once())


def assert_openai_error(r: httpx.Response, words: str, status: int = 400) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"], error


def events(text: str) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream."""
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_out_of_vocabulary_id_fails_only_its_own_request(lm: Any) -> None:
    good = completion(prompt=[1, 2, 3, 4])
    bad = completion(prompt=[1, 2, 3, 1000])
    answers = concurrently(lm.url, [good] * 5 + [bad] + [good] * 5)
    assert [r.status_code for r in answers] == [200] * 5 + [400] + [200] * 5
    assert_openai_error(answers[5], "vocabulary")
    texts = {r.json()["choices"][0]["text"] for r in answers[:5] + answers[6:]}
    assert len(texts) == 1  # greedy: every good request gets the same completion


@pytest.mark.parametrize("ids", [[-1, 2], [2**63, 1], [1, 2**64 + 5]])
def test_prompt_ids_out_of_range_are_refused(lm: Any, ids: list[int]) -> None:
    r = lm.client.post("/v1/completions", json=completion(prompt=ids))
    bad = next(i for i in ids if not 0 <= i < 256)
    assert_openai_error(r, f"token id {bad} is outside the vocabulary")
    assert r.json()["error"]["param"] == "prompt"


def test_lone_surrogate_in_prompt_is_400_or_a_correct_answer(lm: Any) -> None:
    raw = b'{"model": "tinygen", "max_tokens": 4, "temperature": 0, "prompt": "ab\\ud800cd"}'
    r = lm.client.post("/v1/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["usage"]["completion_tokens"] >= 1
    else:
        assert "prompt" in r.json()["error"]["message"]


def test_smallest_positive_temperature(lm: Any) -> None:
    r = lm.client.post("/v1/completions", json=completion(prompt="Once", temperature=5e-324))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        # A temperature this small is greedy decoding: the same text as temperature 0.
        greedy = lm.client.post("/v1/completions", json=completion(prompt="Once")).json()
        assert r.json()["choices"][0]["text"] == greedy["choices"][0]["text"]
    else:
        assert "temperature" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_negative_seed_is_refused(lm: Any, stream: bool) -> None:
    r = lm.client.post("/v1/completions", json=completion(prompt="Once", seed=-1, stream=stream))
    if r.status_code == 200:  # refused inside the stream: an error event, then [DONE]
        assert stream
        data = events(r.text)
        assert data[-1] == "[DONE]" and "seed" in json.loads(data[-2])["error"]["message"], r.text
    else:
        assert_openai_error(r, "seed")


def test_prompt_longer_than_the_context(lm: Any) -> None:
    r = lm.client.post("/v1/completions", json=completion(prompt=[1] * 300))
    assert_openai_error(r, "maximum context length is 256")
    assert "300" in r.json()["error"]["message"]


def test_sigterm_while_streaming_loses_no_accepted_request(start: Any, exports: dict[str, Path]) -> None:
    server = start("gendrain", exports["lm"], protocols=["oip-v2", "openai"],
                   server={"gracePeriodSeconds": 30})
    results: list[tuple[int, str] | BaseException] = []
    opened = threading.Barrier(5)

    def one() -> None:
        try:
            with httpx.stream("POST", server.url + "/v1/completions", timeout=60,
                              json={"model": "gendrain", "prompt": "Once", "max_tokens": 64,
                                    "temperature": 0, "stream": True}) as r:
                opened.wait(30)
                results.append((r.status_code, r.read().decode()))
        except BaseException as exc:  # recorded, and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    opened.wait(30)  # every stream has its 200 headers: all four were accepted
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert server.proc.wait(60) == 0, server.output()
    assert len(results) == 4
    for result in results:
        assert not isinstance(result, BaseException), result
        status, text = result
        assert status == 200
        data = events(text)
        assert data[-1] == "[DONE]", text
        chunks = [json.loads(d) for d in data[:-1]]
        finished = [c for c in chunks if "error" not in c and c["choices"][0]["finish_reason"]]
        errors = [c for c in chunks if "error" in c]
        assert finished or errors, text  # a complete answer or a clean error, never nothing
