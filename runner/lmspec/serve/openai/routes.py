"""The OpenAI-compatible API's router: parses HTTP, calls :mod:`.serving`, writes the answer or
the event stream (``stream: true``).

>>> client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="...")
>>> client.completions.create(model="tiny-lm", prompt="Once", max_tokens=8).choices[0].text
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..common import encode_prompt, new_generation, off_loop, with_limits
from ..errors import ApiError
from ..generate import Generation
from ..state import State
from ..streaming import EventStream, sse
from . import serving
from .protocol import ChatRequest, CompletionRequest, SamplingRequest

Chunk = Callable[[int, str, str | None, bool, Generation, int], dict[str, Any]]
"""(index, text, finish reason, first, generation, tokens reported before) → one stream chunk."""


def add_routes(app: FastAPI, state: State) -> None:
    def start(body: SamplingRequest, ids: list[int], request: Request, max_tokens: int | None,
              logprobs: int | None, echo: bool = False) -> list[Generation]:
        lm = state.require_language_model()
        settings = serving.samplings(state.service.spec, state.max_model_length, lm, ids, body,
                                     max_tokens, logprobs, echo)
        return [new_generation(state, request, ids, sampling) for sampling in settings]

    def check(body: SamplingRequest) -> None:
        serving.check_request(body, state.name, state.service.spec.engine.max_sequences)

    def stream(gens: list[Generation], body: SamplingRequest, chunk: Chunk) -> Response:
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
                    yield sse({**final, "choices": [], "usage": serving.usage(gens)})
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
        serving.check_completion(body)
        lm = state.require_language_model()
        prompt = serving.completion_prompt(body)
        ids = prompt if isinstance(prompt, list) else await encode_prompt(state, prompt)
        gens = start(body, ids, request, body.max_tokens, body.logprobs, echo=body.echo)
        answer = serving.Completion(state.name, lm, ids, body)
        if body.stream:
            serving.check_stream(body)
            return stream(gens, body, answer.chunk)
        return JSONResponse(answer.response(gens, await run_all(gens, request)))

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(body: ChatRequest, request: Request) -> Response:
        check(body)
        serving.check_chat(body)
        lm = state.require_language_model()
        serving.check_chat_template(lm, state.name)
        messages = serving.chat_messages(body.messages)
        # A template is a program over the client's text: never on the event loop.
        ids = await off_loop(state, serving.chat_prompt, lm, messages)
        k = serving.chat_logprobs(body)
        gens = start(body, ids, request, serving.chat_max_tokens(body), k)
        answer = serving.ChatCompletion(state.name, lm, k)
        if body.stream:
            return stream(gens, body, answer.chunk)
        return JSONResponse(answer.response(gens, await run_all(gens, request)))


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
