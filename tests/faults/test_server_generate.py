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


def _generate(**parameters: Any) -> dict[str, Any]:
    return {"text_input": "Once", "parameters": {"max_tokens": 8, "temperature": 0, **parameters}}


@pytest.mark.parametrize("bad", [
    {"seed": 2**64}, {"seed": 2**63}, {"seed": -1}, {"seed": True}, {"max_tokens": True},
    {"max_tokens": 0}, {"temperature": "0.5"}, {"temperature": 2.5}, {"top_p": 0},
    {"stop": ["."] * 17}, {"stop": "x" * 257}, {"stop": ["ok", "x" * 257]}, {"stop": [1]},
])
def test_generation_parameters_are_checked_alike_on_every_route(lm: Any, bad: dict[str, Any]) -> None:
    """OpenAI completions, chat completions and OIP generate refuse the same values with the
    same message, and the connection serves the next request."""
    name = next(iter(bad))
    with httpx.Client(base_url=lm.url, timeout=60) as client:  # one kept-alive connection
        routes = [("/v1/completions", completion(prompt="Once", **bad)),
                  ("/v1/chat/completions", {**completion(**bad), "messages": [{"role": "user", "content": "Hi"}]}),
                  ("/v2/models/tinygen/generate", _generate(**bad))]
        messages = []
        for path, body in routes:
            r = client.post(path, json=body)
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            message = error if isinstance(error, str) else error["message"]
            messages.append(message.removeprefix("parameters."))
            assert message.startswith((name, f"parameters.{name}")), (path, message)
        assert len(set(messages)) == 1, messages
        assert client.post("/v2/models/tinygen/generate", json=_generate()).status_code == 200
        assert client.post("/v1/completions", json=completion(prompt="Once")).status_code == 200


def test_lone_surrogate_in_oip_generate_is_400_and_the_connection_lives(lm: Any) -> None:
    with httpx.Client(base_url=lm.url, timeout=60) as client:
        raw = b'{"text_input": "ab\\ud800cd", "parameters": {"max_tokens": 4}}'
        r = client.post("/v2/models/tinygen/generate", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "text_input is not valid Unicode" in r.json()["error"], r.text
        assert client.post("/v2/models/tinygen/generate", json=_generate()).status_code == 200


@pytest.mark.parametrize(("body", "param"), [
    (completion(prompt="Once", max_tokens=True), "max_tokens"),
    (completion(prompt=[True, 2]), "prompt"),
    (completion(prompt=[True]), "prompt"),
    (completion(prompt="Once", stream=True, stream_options={"include_usage": "yes"}), "stream_options"),
    (completion(prompt="Once", n=1.0), "n"),
    (completion(prompt="Once", echo=1), "echo"),
])
def test_openai_values_of_another_json_type_are_refused(lm: Any, body: dict[str, Any], param: str) -> None:
    """`true` is not 1 and "yes" is not true: a value of another type is a 400, not coerced."""
    r = lm.client.post("/v1/completions", json=body)
    assert_openai_error(r, param)
    assert r.json()["error"]["param"].startswith(param)
