"""HTTP-side helpers the protocol routers share (:mod:`.oip.routes`, :mod:`.openai.routes`,
:mod:`.proxy`): bodies parsed from their raw bytes, prompts tokenized off the event loop,
generations started on the engine, and work bounded by the request timeout. The checks with no
HTTP in them are in :mod:`.dataplane`.

>>> ids = await encode_prompt(state, "Once upon a time")
>>> gen = new_generation(state, request, ids, sampling)
>>> text = await with_limits(state, request, gen.text())
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from .dataplane import check_prompt, check_text
from .errors import ApiError, is_openai
from .generate import Busy, Generation, Sampling
from .state import State
from .streaming import until_disconnect

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    """A request body validated straight from its JSON bytes. Its errors are raised as FastAPI's,
    so they are answered exactly like those of bodies FastAPI validates itself."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that validates its body with :func:`parse_body`
    (``openapi_extra``): the model's JSON Schema with its definitions written in place, since
    ``#/$defs/...`` would point into the OpenAPI document itself (request bodies never nest
    themselves, so this ends)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


INLINE_TEXT_CHARS = 4096
"""Prompts up to this many characters are tokenized on the event loop (a hand-off to the text
thread costs more); longer ones in the text thread, so a megabyte of prompt never stalls the
loop, and with it health probes and every other request."""

T = TypeVar("T")


async def off_loop(state: State, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in the server's text thread (:attr:`.state.State.text_executor`): one
    thread, so a tokenizer is never used by two threads at once."""
    if state.text_executor is None:  # an application without its lifespan (never in a server)
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(state.text_executor, work, *args)


async def encode_prompt(state: State, text: str, param: str = "prompt") -> list[int]:
    """Prompt text → token ids (400 for text no tokenizer can take), checked like any prompt;
    a long prompt is tokenized off the event loop."""
    lm = state.require_language_model()
    check_text(text, param)
    try:
        ids = lm.encode(text) if len(text) <= INLINE_TEXT_CHARS else await off_loop(state, lm.encode, text)
    except ValueError as exc:  # text the tokenizer cannot encode as text
        raise ApiError(400, f"{param}: {exc}", param=param) from None
    check_prompt(lm, ids, param)
    return ids


def new_generation(state: State, request: Request, prompt_ids: list[int], sampling: Sampling) -> Generation:
    """Queue a generation on the engine; a full waiting queue is 429 (OpenAI) or 503 (OIP) with
    ``Retry-After``."""
    runner = state.runner
    if runner is None:
        raise ApiError(503, "the model is not ready yet", type_="server_error",
                       headers={"Retry-After": "1"})
    arrived = time.perf_counter()

    def first_token() -> None:
        state.metrics.time_to_first_token.observe(time.perf_counter() - arrived)

    try:
        return runner.generation(prompt_ids, sampling, on_first_token=first_token)
    except Busy:
        raise ApiError(429 if is_openai(request.url.path) else 503,
                       "the server is overloaded (request queue full); retry later",
                       type_="server_error", headers={"Retry-After": "1"}) from None


async def with_limits(state: State, request: Request, work: Any) -> Any:
    """Await work under ``limits.requestTimeoutSeconds`` (504), cancelled if the client leaves."""
    timeout = state.service.spec.limits.request_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            return await until_disconnect(request, work)
    except TimeoutError:
        raise ApiError(504, f"the request took longer than limits.requestTimeoutSeconds ({timeout} s)",
                       type_="timeout") from None


def path_version(request: Request) -> str | None:
    """The model version a request's path names (``…/versions/{version}/…``), if any."""
    version = request.path_params.get("version")
    return version if isinstance(version, str) else None
