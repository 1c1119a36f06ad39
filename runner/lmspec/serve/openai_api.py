"""OpenAI-compatible routes for causal language models: ``/v1/models``, ``/v1/completions`` and
``/v1/chat/completions``, streamed as server-sent events when ``stream`` is true.

>>> client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="...")
>>> client.completions.create(model="tiny-lm", prompt="Once", max_tokens=8).choices[0].text

Chat prompts are rendered by the chat template of the model's own tokenizer (with the
assistant's turn opened); a model whose tokenizer has none answers chat requests with 400.
Sampling parameters a request leaves out come from the manifest's ``generation``. Supported:
``max_tokens`` (``max_completion_tokens``), ``temperature``, ``top_p``, ``stop``, ``seed``, ``n``
(up to ``engine.maxSequences``), ``logprobs`` (completions: 0-5 alternatives; chat:
``logprobs`` + ``top_logprobs`` 0-5), ``echo`` (completions), ``stream`` and
``stream_options.include_usage``; ``user`` is accepted and has no effect. Penalties,
``logit_bias``, ``best_of`` other than ``n``, ``suffix``, tools and any other field are refused
with 400 rather than ignored, as are values of another JSON type (``"max_tokens": true``). The
generation parameters and their bounds are those of every generating route
(:class:`.common.GenerationParameters`); prompt and message text is encoded so that it never
becomes a control token (:mod:`.client_text`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from .common import (
    GenerationParameters,
    StrictBody,
    check_prompt,
    check_text,
    encode_prompt,
    new_generation,
    off_loop,
    sampling_for,
    with_limits,
)
from .errors import ApiError
from .generate import Generation, Sampling
from .state import State
from .streaming import EventStream, sse

MAX_LOGPROBS = 5


class StreamOptions(StrictBody):
    include_usage: bool = False


class ResponseFormat(StrictBody):
    type: Literal["text"]


class _Sampling(GenerationParameters):
    model: str
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, allow_inf_nan=False)
    frequency_penalty: float = Field(default=0.0, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    """An end-user identifier; accepted, with no effect on the output."""


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None


class ChatMessage(StrictBody):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    response_format: ResponseFormat | None = None


def chat_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the chat template takes them; content parts other than text are refused."""
    out = []
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            if any(part.get("type") != "text" for part in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported",
                               param=f"messages.{i}.content")
            content = "".join(str(part.get("text", "")) for part in content)
        check_text(content or "", param=f"messages.{i}.content")
        message: dict[str, Any] = {"role": m.role, "content": content or ""}
        if m.name is not None:
            message["name"] = m.name
        out.append(message)
    return out


def add_routes(app: FastAPI, state: State) -> None:
    def check(body: _Sampling) -> None:
        if body.model != state.name:
            raise ApiError(404, f"The model `{body.model}` does not exist.", param="model",
                           code="model_not_found")
        limit = state.service.spec.engine.max_sequences
        if body.n > limit:
            raise ApiError(400, f"n {body.n} exceeds engine.maxSequences ({limit})", param="n")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(body, name) != 0:
                raise ApiError(400, f"{name} is not supported (only 0)", param=name)
        if body.logit_bias:
            raise ApiError(400, "logit_bias is not supported", param="logit_bias")

    def start(body: _Sampling, ids: list[int], request: Request, max_tokens: int | None,
              logprobs: int | None, echo: bool = False) -> list[Generation]:
        check_prompt(state, ids)
        sampling = sampling_for(state, len(ids), max_tokens=max_tokens, temperature=body.temperature,
                                top_p=body.top_p, stop=body.stop, seed=body.seed,
                                logprobs=logprobs, echo=echo)
        gens = []
        for i in range(body.n):
            seeded = sampling if body.seed is None else _with_seed(sampling, body.seed + i)
            gens.append(new_generation(state, request, ids, seeded))
        return gens

    def usage(gens: list[Generation]) -> dict[str, int]:
        done = sum(g.completion_tokens for g in gens)
        prompt = gens[0].prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def stream(gens: list[Generation], body: _Sampling,
               chunk: Callable[[int, str, str | None, bool, Generation, int], dict[str, Any]]) -> Response:
        deadline = time.monotonic() + state.service.spec.limits.request_timeout_seconds
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        async def events() -> AsyncIterator[bytes]:
            first = [True] * len(gens)
            seen = [0] * len(gens)  # tokens already reported with log-probabilities
            try:
                async for index, piece in _merge(gens):
                    gen = gens[index]
                    if piece is None:
                        yield sse(chunk(index, "", gen.finish_reason, first[index], gen, seen[index]))
                        continue
                    yield sse(chunk(index, piece, None, first[index], gen, seen[index]))
                    first[index] = False
                    seen[index] = gen.reported
                    if time.monotonic() > deadline:
                        raise ApiError(504, "the request took longer than "
                                       "limits.requestTimeoutSeconds", type_="timeout")
                state.metrics.generated_tokens.inc(sum(g.completion_tokens for g in gens))
                if include_usage:
                    final = chunk(0, "", None, False, gens[0], 0)
                    yield sse({**final, "choices": [], "usage": usage(gens)})
            except ApiError as exc:
                yield sse({"error": {"message": exc.message, "type": exc.type_,
                                     "param": exc.param, "code": exc.code}})
            yield sse("[DONE]")

        return EventStream(events())

    async def run_all(gens: list[Generation], request: Request) -> list[str]:
        texts: list[str] = await with_limits(state, request,
                                             asyncio.gather(*(g.text() for g in gens)))
        state.metrics.generated_tokens.inc(sum(g.completion_tokens for g in gens))
        return texts

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        # 503 while loading: the model's length is known only once it is loaded.
        state.require_ready()
        return {"object": "list", "data": [{"id": state.name, "object": "model",
                                            "created": state.started, "owned_by": "lmspec",
                                            "max_model_len": state.max_model_length}]}

    @app.post("/v1/completions", tags=["openai"])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check(body)
        if body.best_of is not None and body.best_of != body.n:
            raise ApiError(400, "best_of is not supported (other than best_of = n)", param="best_of")
        if body.suffix:
            raise ApiError(400, "suffix is not supported", param="suffix")
        lm = state.require_language_model()
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ApiError(400, "only one prompt per request is supported", param="prompt")
            prompt = str(prompt[0])
        ids = [int(i) for i in prompt] if isinstance(prompt, list) else await encode_prompt(state, prompt)
        gens = start(body, ids, request, body.max_tokens, body.logprobs, echo=body.echo)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        echoed = lm.decode(ids) if body.echo else ""

        def logprobs(gen: Generation, since: int, with_prompt: bool) -> dict[str, Any] | None:
            if body.logprobs is None:
                return None
            infos = (gen.prompt_info if with_prompt else []) + gen.tokens[since:gen.reported]
            texts = [lm.token_text(t.id) for t in infos]
            offsets, at = [], len(echoed) if since == 0 and not with_prompt else 0
            for text in texts:
                offsets.append(at)
                at += len(text)
            return {"tokens": texts,
                    "token_logprobs": [t.logprob for t in infos],
                    "top_logprobs": [({lm.token_text(i): lp for i, lp in t.top} if t.logprob is not None
                                      else None) for t in infos] if body.logprobs else None,
                    "text_offset": offsets}

        def chunk(index: int, text: str, finish: str | None, first: bool, gen: Generation,
                  since: int) -> dict[str, Any]:
            lp = logprobs(gen, since, False) if text else None
            return {"id": rid, "object": "text_completion", "created": created, "model": state.name,
                    "choices": [{"index": index, "text": (echoed if first and text else "") + text,
                                 "logprobs": lp, "finish_reason": finish}]}

        if body.stream:
            if body.echo and body.logprobs is not None:
                raise ApiError(400, "echo with logprobs is not supported when streaming", param="echo")
            return stream(gens, body, chunk)
        texts = await run_all(gens, request)
        choices = [{"index": i, "text": echoed + text, "logprobs": logprobs(g, 0, body.echo),
                    "finish_reason": g.finish_reason} for i, (g, text) in enumerate(zip(gens, texts, strict=True))]
        return JSONResponse({"id": rid, "object": "text_completion", "created": created,
                             "model": state.name, "choices": choices, "usage": usage(gens)})

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(body: ChatRequest, request: Request) -> Response:
        check(body)
        if body.top_logprobs and not body.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        lm = state.require_language_model()
        if not lm.has_chat_template:
            raise ApiError(400, f"model '{state.name}' has no chat template (its tokenizer defines "
                           "none); use /v1/completions, or serve a model whose tokenizer files "
                           "carry a chat_template", param="messages", code="no_chat_template")
        messages = chat_messages(body.messages)
        try:
            # A template is a program over the client's text: never on the event loop.
            ids = await off_loop(state, lm.chat_ids, messages)
        except Exception as exc:  # the template itself refused the conversation
            raise ApiError(400, f"the chat template cannot render these messages: {exc}",
                           param="messages") from None
        max_tokens = body.max_completion_tokens or body.max_tokens
        k = (body.top_logprobs or 0) if body.logprobs else None
        gens = start(body, ids, request, max_tokens, k)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def logprobs(gen: Generation, since: int) -> dict[str, Any] | None:
            if k is None:
                return None

            def entry(token: int, lp: float | None) -> dict[str, Any]:
                text = lm.token_text(token)
                return {"token": text, "logprob": lp, "bytes": list(text.encode())}

            return {"content": [{**entry(t.id, t.logprob),
                                 "top_logprobs": [entry(i, lp) for i, lp in t.top]}
                                for t in gen.tokens[since:gen.reported]]}

        def chunk(index: int, text: str, finish: str | None, first: bool, gen: Generation,
                  since: int) -> dict[str, Any]:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish is not None and not first:
                delta = {}
            return {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": state.name,
                    "choices": [{"index": index, "delta": delta,
                                 "logprobs": logprobs(gen, since) if text else None,
                                 "finish_reason": finish}]}

        if body.stream:
            return stream(gens, body, chunk)
        texts = await run_all(gens, request)
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": state.name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                         "logprobs": logprobs(g, 0), "finish_reason": g.finish_reason}
                        for i, (g, text) in enumerate(zip(gens, texts, strict=True))],
            "usage": usage(gens)})


def _with_seed(sampling: Sampling, seed: int) -> Sampling:
    return dataclasses.replace(sampling, seed=seed)


async def _merge(gens: list[Generation]) -> AsyncIterator[tuple[int, str | None]]:
    """Pieces of several generations as they come, as (index, piece); (index, None) when one ends."""
    if len(gens) == 1:
        pieces = gens[0].__aiter__()
        try:
            async for piece in pieces:
                yield 0, piece
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, str | None] | BaseException] = asyncio.Queue()

    async def pump(index: int, gen: Generation) -> None:
        try:
            async for piece in gen:
                await queue.put((index, piece))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put(exc)

    tasks = [asyncio.ensure_future(pump(i, g)) for i, g in enumerate(gens)]
    try:
        ended = 0
        while ended < len(gens):
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item[1] is None:
                ended += 1
            yield item
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
