"""What every protocol's data plane shares, with no HTTP in it: request bodies' base classes, the
generation parameters every generating route takes, prompt checks, and sampling settings checked
against the limits. Plain values in, plain values (or :class:`.errors.ApiError`) out.

>>> sampling = sampling_for(service.spec, 256, prompt_tokens=5, max_tokens=8, temperature=0.0,
...                         top_p=None, stop=None, seed=None)
>>> sampling.max_tokens
8

The protocol planes (:mod:`.oip.dataplane`, :mod:`.openai.serving`) build on these; their routers
(:mod:`.oip.routes`, :mod:`.openai.routes`) parse HTTP, call the planes and write the answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ApiError
from .generate import Sampling

if TYPE_CHECKING:
    from ..engine.lm import TextModel
    from ..standard import InferenceServiceSpec

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


def check_prompt(lm: TextModel, ids: list[int], param: str = "prompt") -> None:
    """Token ids of a prompt: non-empty and inside the vocabulary (before they join a batch)."""
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


def sampling_for(spec: InferenceServiceSpec, max_model_length: int, prompt_tokens: int, *,
                 max_tokens: int | None, temperature: float | None, top_p: float | None,
                 stop: str | list[str] | None, seed: int | None, logprobs: int | None = None,
                 echo: bool = False) -> Sampling:
    """Request values over the manifest's ``generation`` defaults, checked against the limits
    and the engine's maximum model length (``max_model_length``) before any work is done."""
    gen = spec.generation
    tokens = gen.max_tokens if max_tokens is None else max_tokens
    if tokens > spec.limits.max_tokens:
        raise ApiError(400, f"max_tokens {tokens} exceeds this server's limit of "
                       f"{spec.limits.max_tokens}", param="max_tokens")
    limit = max_model_length
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


def check_model(name: str, model: str, version: str | None) -> None:
    """The model (and version) an OIP path names is the one served (``name``, version 1)."""
    if model != name:
        raise ApiError(404, f"unknown model '{model}' (this server serves '{name}')")
    if version is not None and version != "1":
        raise ApiError(404, f"model '{model}' has no version '{version}' (versions: ['1'])")
