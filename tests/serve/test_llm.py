"""A Hugging Face format causal LM (llama-style, BPE tokenizer with a chat template) over a real
``lmspec serve`` process: the engine's greedy output equals ``transformers`` ``generate`` token
for token, alone and in a batch; the chat template of the tokenizer is applied; streams
interleave; a cancelled stream leaves the engine at once; context-length and queue limits."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

PROMPTS = ["The server", "lmspec validate checks every manifest and reports",
           "A Model manifest declares the architecture, the signature and the task of a model "
           "that a TrainingJob trains and an InferenceService serves over HTTP", "Hi"]


@pytest.fixture(scope="module")
def hf(llama: Path) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(llama).eval(), AutoTokenizer.from_pretrained(llama)


@pytest.fixture(scope="module")
def server(start: Any, llama: Path) -> Any:
    return start("llama", llama, protocols=["oip-v2", "openai"],
                 generation={"maxTokens": 24, "temperature": 0.0},
                 engine={"maxModelLength": 256, "prefillChunkTokens": 16},
                 limits={"maxTokens": 400})


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def reference(hf: Any, ids: list[int], max_new_tokens: int) -> tuple[str, int]:
    """Greedy text and token count from plain ``generate`` (EOS from the generation config)."""
    import torch

    model, tok = hf
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, len(ids):].tolist()
    eos = set(model.generation_config.eos_token_id)
    kept = new[: next((i for i, t in enumerate(new) if t in eos), len(new))]
    return tok.decode(kept, skip_special_tokens=True), len(kept)


def test_greedy_equals_generate_alone_and_batched(client: openai.OpenAI, hf: Any) -> None:
    _, tok = hf
    expected = [reference(hf, tok(p)["input_ids"], 40) for p in PROMPTS]

    def complete(prompt: str) -> Any:
        return client.completions.create(model="llama", prompt=prompt, max_tokens=40, temperature=0)

    alone = complete(PROMPTS[2])
    assert (alone.choices[0].text, alone.usage and alone.usage.completion_tokens) == expected[2]
    # Concurrent requests share the engine's batch (joining it while others decode; the long
    # prompt is prefilled in chunks of 16): every answer is still the model's own greedy one.
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(complete, PROMPTS))
    for answer, (text, count) in zip(answers, expected, strict=True):
        assert answer.choices[0].text == text
        assert answer.usage is not None and answer.usage.completion_tokens == count
        assert answer.choices[0].finish_reason == ("length" if count == 40 else "stop")


def test_chat_uses_the_tokenizer_template(client: openai.OpenAI, hf: Any) -> None:
    _, tok = hf
    messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    r = client.chat.completions.create(model="llama", messages=messages, max_tokens=12)
    assert r.usage is not None and r.usage.prompt_tokens == len(ids)
    assert (r.choices[0].message.content, r.usage.completion_tokens) == reference(hf, ids, 12)
    stream = list(client.chat.completions.create(model="llama", messages=messages, max_tokens=12,
                                                 stream=True, logprobs=True, top_logprobs=2))
    assert stream[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in stream) == r.choices[0].message.content
    content = [e for c in stream if c.choices[0].logprobs for e in c.choices[0].logprobs.content or []]
    assert len(content) == r.usage.completion_tokens and all(len(e.top_logprobs) == 2 for e in content)


def test_streaming_with_the_openai_client(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="llama", prompt="Serving", max_tokens=20)
    chunks = list(client.completions.create(model="llama", prompt="Serving", max_tokens=20, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streams_interleave(server: Any) -> None:
    """Four concurrent streams: each gets tokens while the others are still generating."""
    arrivals: dict[int, list[float]] = {}

    def read(i: int) -> None:
        body = {"model": "llama", "prompt": PROMPTS[i % 2], "max_tokens": 60, "stream": True,
                "temperature": 1.0, "seed": i}
        times = arrivals.setdefault(i, [])
        with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    times.append(time.monotonic())

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(v) > 10 for v in arrivals.values()), {k: len(v) for k, v in arrivals.items()}
    first_end = min(v[-1] for v in arrivals.values())
    # No stream waited for another to finish: all had their first token before any ended, and
    # every stream kept receiving tokens while the others ran.
    assert max(v[0] for v in arrivals.values()) < first_end
    assert all(sum(t < first_end for t in v) > 5 for v in arrivals.values())


def test_cancel_mid_stream_frees_the_sequence(server: Any) -> None:
    # Seeded: an unseeded draw from this untrained model ends with its end-of-sequence token
    # within the first tokens now and then, and then nothing is running to be cancelled.
    body = {"model": "llama", "prompt": "x", "max_tokens": 200, "stream": True, "temperature": 1.0,
            "seed": 7}
    # The premise: this draw runs to max_tokens, so the stream below is cut mid-way by the client.
    whole = httpx.post(server.url + "/v1/completions", json={**body, "stream": False}, timeout=60)
    assert whole.json()["choices"][0]["finish_reason"] == "length", whole.text
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: {") for line in got)
        assert not any('"finish_reason":"stop"' in line.replace(" ", "") for line in got), got
        assert server.metric("lmspec_running_sequences") == 1
    deadline = time.monotonic() + 10
    while server.metric("lmspec_running_sequences") > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.metrics("lmspec_running_sequences", "lmspec_waiting_sequences") == [0, 0]
    settled = server.metric("lmspec_inter_token_latency_seconds_count")
    time.sleep(0.3)
    assert server.metric("lmspec_inter_token_latency_seconds_count") == settled
    assert server.metric("lmspec_time_to_first_token_seconds_count") > 0


def test_context_length_is_checked_before_work(client: openai.OpenAI, server: Any, hf: Any) -> None:
    _, tok = hf
    prompt = "word " * 50
    n = len(tok(prompt)["input_ids"])
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="llama", prompt=prompt, max_tokens=257 - n)
    assert f"maximum context length is 256 tokens. However, you requested 257 tokens ({n} in" in str(info.value)
    r = server.client.post("/v1/completions", json={"model": "llama", "prompt": [10**6], "max_tokens": 1})
    assert r.status_code == 400 and "outside the vocabulary" in r.json()["error"]["message"]


def test_oip_generate_and_infer(server: Any, hf: Any) -> None:
    r = server.client.post("/v2/models/llama/generate",
                           json={"text_input": PROMPTS[0], "parameters": {"max_tokens": 10}})
    assert r.status_code == 200 and r.json()["text_output"] == reference(hf, hf[1](PROMPTS[0])["input_ids"], 10)[0]
    meta = server.client.get("/v2/models/llama").json()
    assert meta["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}]


def test_queue_limit(start: Any, llama: Path) -> None:
    server = start("llama-busy", llama, protocols=["openai"],
                   engine={"maxSequences": 1, "maxWaitingSequences": 2})

    def complete(_: int) -> httpx.Response:
        return server.client.post("/v1/completions", json={"model": "llama-busy", "prompt": "a",
                                                           "max_tokens": 20, "temperature": 1.0})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(complete, range(6)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and "queue full" in busy.json()["error"]["message"]


def test_chat_templates_of_large_bodies_leave_the_event_loop_free(server: Any) -> None:
    """Rendering and tokenizing four bodies of almost 1 MB each runs off the event loop: a
    liveness probe (kubelet's default timeout is 1 s) keeps being answered meanwhile."""
    text = ("The server answers health probes while it renders a long chat. " * 16_000)[:1_000_000]
    body = {"model": "llama", "messages": [{"role": "user", "content": text}], "max_tokens": 1}
    probes: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        posted = [pool.submit(httpx.post, server.url + "/v1/chat/completions", json=body, timeout=120)
                  for _ in range(4)]
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            while not all(f.done() for f in posted):
                t0 = time.perf_counter()
                assert probe.get("/v2/health/live").status_code == 200
                probes.append(time.perf_counter() - t0)
                time.sleep(0.02)
        answers = [f.result() for f in posted]
    # Far longer than the model's context: refused, but only after the template ran.
    assert all(r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
               for r in answers), answers[0].text[:300]
    assert len(probes) >= 5 and max(probes) < 0.5, (len(probes), max(probes))
