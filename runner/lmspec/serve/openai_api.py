"""OpenAI-compatible routes for causal language models: ``/v1/models``, ``/v1/completions`` and
``/v1/chat/completions``, streamed as server-sent events when ``stream`` is true.

>>> client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="...")
>>> client.completions.create(model="tiny-lm", prompt="Once", max_tokens=8).choices[0].text

Chat template: the reference models have none of their own, so messages are rendered as one
line per message, ``"<role>: <content>\\n"``, followed by ``"assistant:"``; the model continues
from there. Sampling parameters a request leaves out come from the manifest's ``generation``;
``n`` must be 1 and ``logprobs`` are not returned.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from .app import _Body, new_generation, sampling_for, with_limits
from .errors import ApiError
from .generate import Generation
from .state import State
from .streaming import EventStream, sse


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


def chat_prompt(messages: list[ChatMessage]) -> str:
    """The documented template: ``"<role>: <content>\\n"`` per message, then ``"assistant:"``."""
    lines = []
    for m in messages:
        content = m.content
        if isinstance(content, list):
            content = "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
        lines.append(f"{m.role}: {content or ''}\n")
    return "".join(lines) + "assistant:"


def add_routes(app: FastAPI, state: State) -> None:
    def check(body: _Sampling) -> None:
        if body.model != state.name:
            raise ApiError(404, f"The model `{body.model}` does not exist.", param="model",
                           code="model_not_found")
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n")

    def prepare(body: _Sampling, prompt: str | list[int], request: Request,
                max_tokens: int | None) -> Generation:
        lm = state.require_language_model()
        ids = list(prompt) if isinstance(prompt, list) else lm.encode(prompt)
        sampling = sampling_for(state, len(ids), max_tokens=max_tokens, temperature=body.temperature,
                                top_p=body.top_p, stop=body.stop, seed=body.seed)
        return new_generation(state, request, ids, sampling)

    def usage(gen: Generation) -> dict[str, int]:
        return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                "total_tokens": gen.prompt_tokens + gen.completion_tokens}

    def stream(gen: Generation, body: _Sampling, chunk: Any) -> Response:
        deadline = time.monotonic() + state.service.spec.limits.request_timeout_seconds
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        async def events() -> AsyncIterator[bytes]:
            first = True
            try:
                async for piece in gen:
                    yield sse(chunk(piece, None, first))
                    first = False
                    if time.monotonic() > deadline:
                        raise ApiError(504, "the request took longer than "
                                       "limits.requestTimeoutSeconds", type_="timeout")
                state.metrics.generated_tokens.inc(gen.completion_tokens)
                yield sse(chunk("", gen.finish_reason, first))
                if include_usage:
                    yield sse({**chunk("", None, False), "choices": [], "usage": usage(gen)})
            except ApiError as exc:
                yield sse({"error": {"message": exc.message, "type": exc.type_,
                                     "param": exc.param, "code": exc.code}})
            yield sse("[DONE]")

        return EventStream(events())

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": state.name, "object": "model",
                                            "created": state.started, "owned_by": "lmspec"}]}

    @app.post("/v1/completions", tags=["openai"])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check(body)
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ApiError(400, "only one prompt per request is supported", param="prompt")
            prompt = str(prompt[0])
        gen = prepare(body, prompt, request, body.max_tokens)  # type: ignore[arg-type]
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(text: str, finish: str | None, _: bool) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": created, "model": state.name,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

        if body.stream:
            return stream(gen, body, chunk)
        text = await with_limits(state, request, gen.text())
        state.metrics.generated_tokens.inc(gen.completion_tokens)
        return JSONResponse({**chunk(text, gen.finish_reason, False), "usage": usage(gen)})

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(body: ChatRequest, request: Request) -> Response:
        check(body)
        max_tokens = body.max_completion_tokens or body.max_tokens
        gen = prepare(body, chat_prompt(body.messages), request, max_tokens)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(text: str, finish: str | None, first: bool) -> dict[str, Any]:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish is not None and not first:
                delta = {}
            return {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": state.name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        if body.stream:
            return stream(gen, body, chunk)
        text = await with_limits(state, request, gen.text())
        state.metrics.generated_tokens.inc(gen.completion_tokens)
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": state.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": gen.finish_reason}],
            "usage": usage(gen)})
