"""The OpenAI-compatible API's work (``lmspec.serve.openai.serving``) called directly, with real
models loaded in this process (lmspec's byte-level LM, a Hugging Face llama with a chat template):
no server, no socket. Each refusal is rendered as the router renders it (``error_response``), and
the bodies are those ``/v1/...`` answers over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from lmspec.engine.lm import TextModel
from lmspec.engine.predictor import load_export
from lmspec.serve.errors import ApiError, error_response
from lmspec.serve.openai import serving
from lmspec.serve.openai.protocol import ChatMessage, ChatRequest, CompletionRequest
from lmspec.v1alpha1 import InferenceService

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"


def refused(path: str, call: Any, *args: Any) -> tuple[int, Any]:
    """Status and JSON body the server writes for the ApiError ``call(*args)`` raises."""
    with pytest.raises(ApiError) as info:
        call(*args)
    request = Request({"type": "http", "method": "POST", "path": path, "query_string": b"",
                       "headers": [], "scheme": "http", "server": ("127.0.0.1", 8080)})
    response = error_response(request, info.value)
    return response.status_code, json.loads(bytes(response.body))


def error(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


@pytest.fixture(scope="module")
def byte_lm(exports: dict[str, Path]) -> TextModel:
    """lmspec's own causal LM export: a byte tokenizer, no chat template, context 256."""
    lm = load_export(exports["lm"]).language_model
    assert lm is not None
    return lm


@pytest.fixture(scope="module")
def chat_lm(llama: Path) -> TextModel:
    lm = load_export(llama).language_model
    assert lm is not None and lm.has_chat_template
    return lm


SPEC = InferenceService.model_validate({
    "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "lm"},
    "spec": {"model": {"path": "export"}, "protocols": ["openai"], "limits": {"maxTokens": 64}}}).spec


def completion(**body: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "lm", "prompt": "a", **body})


def chat(**body: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "lm", "messages": [{"role": "user", "content": "a"}], **body})


@pytest.mark.parametrize("body, status, answer", [
    ({"model": "other"}, 404, error("The model `other` does not exist.", "model", "model_not_found")),
    ({"n": 99}, 400, error("n 99 exceeds engine.maxSequences (4)", "n")),
    ({"presence_penalty": 0.5}, 400, error("presence_penalty is not supported (only 0)", "presence_penalty")),
    ({"frequency_penalty": -1.0}, 400, error("frequency_penalty is not supported (only 0)", "frequency_penalty")),
    ({"logit_bias": {"1": 2.0}}, 400, error("logit_bias is not supported", "logit_bias")),
], ids=["model", "n", "presence", "frequency", "logit_bias"])
def test_every_request_is_checked_first(body: dict[str, Any], status: int, answer: dict[str, Any]) -> None:
    assert refused(COMPLETIONS, serving.check_request, completion(**body), "lm", 4) == (status, answer)
    assert refused(CHAT, serving.check_request, chat(**body), "lm", 4) == (status, answer)


def test_accepted_requests_pass() -> None:
    serving.check_request(completion(n=4, user="u-1", presence_penalty=0.0), "lm", 4)
    serving.check_completion(completion(best_of=2, n=2))
    serving.check_chat(chat(logprobs=True, top_logprobs=2))
    serving.check_stream(completion(stream=True, echo=True))


def test_completions_parameters() -> None:
    assert refused(COMPLETIONS, serving.check_completion, completion(best_of=2)) == (
        400, error("best_of is not supported (other than best_of = n)", "best_of"))
    assert refused(COMPLETIONS, serving.check_completion, completion(suffix="z")) == (
        400, error("suffix is not supported", "suffix"))
    assert refused(COMPLETIONS, serving.check_stream, completion(stream=True, echo=True, logprobs=1)) == (
        400, error("echo with logprobs is not supported when streaming", "echo"))


def test_completion_prompts() -> None:
    assert serving.completion_prompt(completion(prompt="Once")) == "Once"
    assert serving.completion_prompt(completion(prompt=["Once"])) == "Once"
    assert serving.completion_prompt(completion(prompt=[5, 6])) == [5, 6]
    assert serving.completion_prompt(completion(prompt=[])) == []
    assert refused(COMPLETIONS, serving.completion_prompt, completion(prompt=["a", "b"])) == (
        400, error("only one prompt per request is supported", "prompt"))


@pytest.mark.parametrize("ids, max_tokens, answer", [
    ([], None, error("the prompt is empty (it must hold at least one token)", "prompt")),
    ([1, 999], None, error("token id 999 is outside the vocabulary [0, 256)", "prompt")),
    ([1] * 250, 10, error("This model's maximum context length is 256 tokens. However, you requested 260 "
                          "tokens (250 in the prompt, 10 for the completion).", "max_tokens",
                          "context_length_exceeded")),
    ([1], 1000, error("max_tokens 1000 exceeds this server's limit of 64", "max_tokens")),
], ids=["empty", "vocabulary", "context", "limit"])
def test_sampling_refusals(byte_lm: TextModel, ids: list[int], max_tokens: int | None,
                           answer: dict[str, Any]) -> None:
    assert refused(COMPLETIONS, serving.samplings, SPEC, 256, byte_lm, ids, completion(), max_tokens, None) \
        == (400, answer)


def test_samplings_seed_each_of_n(byte_lm: TextModel) -> None:
    seeded = serving.samplings(SPEC, 256, byte_lm, [1, 2], completion(n=3, seed=5, stop="x", temperature=0.0),
                               8, 2, True)
    assert [s.seed for s in seeded] == [5, 6, 7]
    assert {(s.max_tokens, s.temperature, tuple(s.stop), s.logprobs, s.echo) for s in seeded} == \
        {(8, 0.0, ("x",), 2, True)}
    unseeded = serving.samplings(SPEC, 256, byte_lm, [1], completion(n=2), None, None)
    assert [s.seed for s in unseeded] == [None, None] and unseeded[0].max_tokens == 16  # generation.maxTokens
    # The context holds the prompt and max_tokens exactly.
    assert serving.samplings(SPEC, 256, byte_lm, [1] * 192, completion(), 64, None)[0].max_tokens == 64


def test_chat_parameters(byte_lm: TextModel, chat_lm: TextModel) -> None:
    assert refused(CHAT, serving.check_chat, chat(top_logprobs=2)) == (
        400, error("top_logprobs needs logprobs: true", "top_logprobs"))
    assert refused(CHAT, serving.check_chat_template, byte_lm, "lm") == (
        400, error("model 'lm' has no chat template (its tokenizer defines none); use /v1/completions, or "
                   "serve a model whose tokenizer files carry a chat_template", "messages", "no_chat_template"))
    serving.check_chat_template(chat_lm, "lm")
    assert serving.chat_max_tokens(chat(max_tokens=5)) == 5
    assert serving.chat_max_tokens(chat(max_tokens=5, max_completion_tokens=7)) == 7
    assert serving.chat_logprobs(chat()) is None
    assert serving.chat_logprobs(chat(logprobs=True)) == 0
    assert serving.chat_logprobs(chat(logprobs=True, top_logprobs=3)) == 3


def test_chat_messages() -> None:
    messages = [ChatMessage(role="system", content="Be brief."),
                ChatMessage(role="user", content=[{"type": "text", "text": "Hi, "}, {"type": "text", "text": "you"}],
                            name="ann"),
                ChatMessage(role="assistant", content=None)]
    assert serving.chat_messages(messages) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, you", "name": "ann"},
        {"role": "assistant", "content": ""}]
    image = [ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])]
    assert refused(CHAT, serving.chat_messages, image) == (
        400, error("messages[0].content: only text parts are supported", "messages.0.content"))
    surrogate = [ChatMessage(role="user", content="ok"), ChatMessage(role="user", content="\ud800")]
    assert refused(CHAT, serving.chat_messages, surrogate) == (
        400, error("messages.1.content is not valid Unicode: surrogates not allowed at character 0",
                   "messages.1.content"))


def test_chat_prompt_is_rendered_by_the_template(chat_lm: TextModel) -> None:
    messages = [{"role": "user", "content": "hello"}]
    ids = serving.chat_prompt(chat_lm, messages)
    assert ids == chat_lm.chat_ids(messages)
    assert chat_lm.decode(ids).endswith("assistant\n")


def test_a_template_that_refuses_the_conversation(chat_lm: TextModel) -> None:
    tokenizer = chat_lm.tokenizer
    original = tokenizer.chat_template
    tokenizer.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    try:
        assert refused(CHAT, serving.chat_prompt, chat_lm, [{"role": "user", "content": "a"}]) == (
            400, error("the chat template cannot render these messages: Conversation roles must alternate",
                       "messages"))
    finally:
        tokenizer.chat_template = original
