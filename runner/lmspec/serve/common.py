"""Request handling shared by the protocol modules (:mod:`.app`'s OIP routes and
:mod:`.openai_api`): request bodies' base class, the generation parameters every route takes,
sampling settings checked against the limits, generations started on the engine, and work
bounded by the request timeout.

>>> sampling = sampling_for(state, len(ids), max_tokens=8, temperature=0.0, top_p=None,
...                         stop=None, seed=None)
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ApiError, is_openai
from .generate import Busy, Generation, Sampling
from .state import State
from .streaming import until_disconnect


class Body(BaseModel):
    """A request body that keeps fields it does not declare (the protocol modules decide what
    to do with them)."""

    model_config = ConfigDict(extra="allow")


class StrictBody(BaseModel):
    """A request body that refuses fields it does not declare (400 naming the field), so no
    parameter is silently ignored, and values of another JSON type than declared: ``true`` is not
    the integer 1, nor ``"yes"`` a boolean."""

    model_config = ConfigDict(extra="forbid", strict=True)


MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
"""Bounds of a request's ``stop``: every stop string is searched for in the text after each token."""


class GenerationParameters(StrictBody):
    """The generation parameters of every route that generates (OpenAI completions and chat
    completions, the OIP generate extension's ``parameters``): one set of types, bounds and
    messages, so a value one route refuses no other route takes."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: str | list[str] | None = None
    """A string or a list of at most 16, each at most 256 characters."""
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    """A generator seed: a non-negative 64-bit integer (``seed + i`` seeds the i-th of ``n``)."""

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, each at most "
                             f"{MAX_STOP_CHARS} characters")
        return stop


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


def check_prompt(state: State, ids: list[int], param: str = "prompt") -> None:
    """Token ids of a prompt: non-empty and inside the vocabulary (before they join a batch)."""
    lm = state.require_language_model()
    if not ids:
        raise ApiError(400, "the prompt is empty (it must hold at least one token)", param=param)
    bad = [i for i in ids if not 0 <= i < lm.vocab_size]
    if bad:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary [0, {lm.vocab_size})",
                       param=param)


def check_text(text: str, param: str = "prompt") -> str:
    """A prompt string that UTF-8 can encode: JSON lets a lone surrogate (``"\\ud800"``) through,
    and no tokenizer can take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{param} is not valid Unicode: {exc.reason} at character {exc.start}",
                       param=param) from None
    return text


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
    check_prompt(state, ids, param)
    return ids


def sampling_for(state: State, prompt_tokens: int, *, max_tokens: int | None,
                 temperature: float | None, top_p: float | None, stop: str | list[str] | None,
                 seed: int | None, logprobs: int | None = None, echo: bool = False) -> Sampling:
    """Request values over the manifest's ``generation`` defaults, checked against the limits
    and the engine's maximum model length before any work is done."""
    spec = state.service.spec
    gen = spec.generation
    state.require_language_model()
    tokens = gen.max_tokens if max_tokens is None else max_tokens
    if tokens > spec.limits.max_tokens:
        raise ApiError(400, f"max_tokens {tokens} exceeds this server's limit of "
                       f"{spec.limits.max_tokens}", param="max_tokens")
    limit = state.max_model_length
    if prompt_tokens + tokens > limit:
        raise ApiError(400, f"This model's maximum context length is {limit} tokens. "
                       f"However, you requested {prompt_tokens + tokens} tokens "
                       f"({prompt_tokens} in the prompt, {tokens} for the completion).",
                       param="max_tokens", code="context_length_exceeded")
    stops = list(gen.stop) if stop is None else ([stop] if isinstance(stop, str) else list(stop))
    return Sampling(max_tokens=tokens,
                    temperature=gen.temperature if temperature is None else temperature,
                    top_p=gen.top_p if top_p is None else top_p,
                    stop=[s for s in stops if s], seed=seed, logprobs=logprobs, echo=echo)


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


def check_model(state: State, model: str, version: str | None) -> None:
    if model != state.name:
        raise ApiError(404, f"unknown model '{model}' (this server serves '{state.name}')")
    if version is not None and version != "1":
        raise ApiError(404, f"model '{model}' has no version '{version}' (versions: ['1'])")
