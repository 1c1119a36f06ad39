"""Causal language models over a real ``lmspec serve`` process: the OpenAI-compatible API (through
the official ``openai`` client), the OIP ``generate`` extension, streaming, limits, and clients
that disconnect mid-stream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(start: Any, exports: dict[str, Path]) -> Any:
    return start("tiny-lm", exports["lm"], protocols=["oip-v2", "openai"],
                 generation={"maxTokens": 6, "temperature": 0.0},
                 limits={"maxTokens": 240})


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_models(client: openai.OpenAI) -> None:
    [model] = client.models.list().data
    assert model.id == "tiny-lm" and model.object == "model" and model.owned_by == "lmspec"


def test_completion_defaults_and_usage(client: openai.OpenAI) -> None:
    r = client.completions.create(model="tiny-lm", prompt="Hello")
    assert r.object == "text_completion" and r.model == "tiny-lm" and r.id.startswith("cmpl-")
    [choice] = r.choices
    assert choice.finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 6, 11)
    # Greedy decoding (the manifest's temperature 0) is deterministic.
    assert client.completions.create(model="tiny-lm", prompt="Hello").choices[0].text == choice.text


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def text(seed: int) -> str:
        return client.completions.create(model="tiny-lm", prompt="ab", max_tokens=12,
                                         temperature=1.5, top_p=0.95, seed=seed).choices[0].text
    assert text(1) == text(1)
    assert len({text(s) for s in range(2, 6)}) > 1


def test_stop_string_ends_generation(client: openai.OpenAI) -> None:
    free = client.completions.create(model="tiny-lm", prompt="Hello", max_tokens=8).choices[0].text
    stop = free[3:5]
    assert stop
    r = client.completions.create(model="tiny-lm", prompt="Hello", max_tokens=8, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == free[: free.index(stop)]


def test_streamed_completion_equals_unstreamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny-lm", prompt="Hi", max_tokens=10).choices[0].text
    chunks = list(client.completions.create(model="tiny-lm", prompt="Hi", max_tokens=10, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_chat_without_a_template_is_refused(client: openai.OpenAI) -> None:
    # The byte-level model's tokenizer has no chat template: no prompt format is made up.
    messages: Any = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.BadRequestError, match="no chat template") as info:
        client.chat.completions.create(model="tiny-lm", messages=messages, max_tokens=5)
    assert info.value.code == "no_chat_template"


def test_unknown_parameters_are_refused(server: Any) -> None:
    r = httpx.post(server.url + "/v1/completions",
                   json={"model": "tiny-lm", "prompt": "x", "repetition_penalty": 1.2})
    assert r.status_code == 400 and "repetition_penalty" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v2/models/tiny-lm/generate",
                   json={"text_input": "x", "parameters": {"top_k": 5}})
    assert r.status_code == 400 and "top_k" in r.json()["error"]


def test_n_choices_and_logprobs(client: openai.OpenAI) -> None:
    r = client.completions.create(model="tiny-lm", prompt="ab", max_tokens=4, n=3, temperature=1.0,
                                  seed=7, logprobs=2, echo=True)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage is not None and r.usage.completion_tokens == 12 and r.usage.prompt_tokens == 2
    for c in r.choices:
        assert c.text.startswith("ab") and c.logprobs is not None
        assert c.logprobs.tokens is not None and c.logprobs.token_logprobs is not None
        assert len(c.logprobs.tokens) == 2 + 4  # echoed prompt, then the completion
        assert c.logprobs.token_logprobs[0] is None and all(
            lp is not None and lp <= 0 for lp in c.logprobs.token_logprobs[1:])
        assert c.logprobs.top_logprobs is not None and len(c.logprobs.top_logprobs[1]) == 2


def test_raw_stream_format(server: Any) -> None:
    with httpx.stream("POST", server.url + "/v1/completions", timeout=30,
                      json={"model": "tiny-lm", "prompt": "x", "max_tokens": 3, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") for e in events[:-1])


@pytest.mark.parametrize("request_, status, param", [
    ({"prompt": "x" * 250, "max_tokens": 10}, 400, "max_tokens"),    # context length 256
    ({"prompt": "x", "max_tokens": 241}, 400, "max_tokens"),         # limits.maxTokens 240
    ({"prompt": "x", "temperature": 3}, 400, "temperature"),
    ({"prompt": "x", "n": 33}, 400, "n"),                            # engine.maxSequences 32
    ({"prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"prompt": [300], "max_tokens": 1}, 400, "prompt"),             # outside the byte vocabulary
    ({"prompt": "x", "best_of": 3}, 400, "best_of"),
    ({"prompt": "x", "model": "gpt-9"}, 404, "model"),
])
def test_openai_errors(server: Any, request_: dict[str, Any], status: int, param: str) -> None:
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny-lm", **request_})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param


def test_openai_client_raises_on_context_overflow(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256"):
        client.completions.create(model="tiny-lm", prompt="y" * 300, max_tokens=1)


def test_oip_generate(server: Any) -> None:
    assert server.client.get("/v2").json()["extensions"] == ["generate"]
    r = server.client.post("/v2/models/tiny-lm/generate",
                           json={"text_input": "Hello", "parameters": {"max_tokens": 6}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "tiny-lm" and body["model_version"] == "1"
    with server.client.stream("POST", "/v2/models/tiny-lm/generate_stream",
                              json={"text_input": "Hello", "parameters": {"max_tokens": 6}}) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == body["text_output"]
    assert events[-1]["finish_reason"] == "length"
    too_long = server.client.post("/v2/models/tiny-lm/generate",
                                  json={"text_input": "x" * 255, "parameters": {"max_tokens": 5}})
    assert too_long.status_code == 400 and "context length" in too_long.json()["error"]


def test_disconnect_mid_stream_frees_the_work(server: Any, client: openai.OpenAI) -> None:
    def steps() -> float:
        return server.metric("lmspec_batch_size_count", queue="generate")

    before = steps()
    with httpx.stream("POST", server.url + "/v1/completions", timeout=30,
                      json={"model": "tiny-lm", "prompt": "x", "max_tokens": 240, "stream": True,
                            "temperature": 1.0}) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: {") for line in got)
    # The generation stops: forward passes stop being counted, nothing stays in flight.
    deadline = time.monotonic() + 10
    while server.metric("lmspec_requests_in_flight") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.metric("lmspec_requests_in_flight") == 0
    assert server.metric("lmspec_queue_depth", queue="generate") == 0
    # The counter stops moving (an iteration already running when the client left may still end
    # and be counted, so it is read until two reads half a second apart agree).
    settled, still = steps(), False
    deadline = time.monotonic() + 10
    while not still and time.monotonic() < deadline:
        time.sleep(0.5)
        now = steps()
        still, settled = now == settled, now
    assert still, "forward passes went on after the client left"
    assert settled - before < 120  # the 240-token generation was cut short
    # And the server is unharmed.
    assert client.completions.create(model="tiny-lm", prompt="ok", max_tokens=2).choices[0].text is not None
    assert server.metric("lmspec_time_to_first_token_seconds_count") > 0


def test_request_timeout_cancels_the_generation(exports: dict[str, Path]) -> None:
    """In one process: a generation that outlives limits.requestTimeoutSeconds is a 504, and its
    sequence leaves the engine."""
    from starlette.testclient import TestClient

    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import create_app
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "t"},
        "spec": {"model": {"path": str(exports["lm"])}, "protocols": ["openai"],
                 "limits": {"requestTimeoutSeconds": 0.001}}})
    app, state = create_app(service, lambda: load_export(exports["lm"], service.spec))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while not state.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        r = client.post("/v1/completions", json={"model": "t", "prompt": "slow", "max_tokens": 200})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
        assert state.runner is not None
        while state.runner.engine.has_work and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.runner.engine.counts() == (0, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_end_where_the_text_ends_at_a_stop_string(server: Any, stream: bool) -> None:
    """The stop string and the tokens after it are neither returned as text nor as tokens."""
    body = {"model": "tiny-lm", "prompt": "Hello", "max_tokens": 12, "logprobs": 1}
    free = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]
    tokens = free["logprobs"]["tokens"]
    assert "".join(tokens) == free["text"] and len(tokens) == 12  # one character per token
    stop = free["text"][4:7]
    kept = free["text"][:free["text"].index(stop)]
    r = httpx.post(server.url + "/v1/completions", json={**body, "stop": [stop], "stream": stream})
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        text = "".join(c["choices"][0]["text"] for c in chunks)
        got = [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    else:
        choice = r.json()["choices"][0]
        text, got = choice["text"], choice["logprobs"]["tokens"]
        assert r.json()["usage"]["completion_tokens"] == len(kept)
    assert text == kept and got == tokens[:len(kept)], (text, got, tokens)
