"""Request bodies of the OpenAI-compatible API (also the application's OpenAPI document).

>>> CompletionRequest.model_validate({"model": "tiny-lm", "prompt": "Once", "max_tokens": 8})

Fields a client may send that this server does not implement are declared so that
:mod:`.serving` refuses them by name (penalties, ``logit_bias``, ``best_of``, ``suffix``); any
other field, or a value of another JSON type, is refused when the body is parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..dataplane import GenerationParameters, StrictBody

MAX_LOGPROBS = 5


class StreamOptions(StrictBody):
    include_usage: bool = False


class ResponseFormat(StrictBody):
    type: Literal["text"]


class SamplingRequest(GenerationParameters):
    """What completions and chat completions requests share."""

    model: str
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, allow_inf_nan=False)
    frequency_penalty: float = Field(default=0.0, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    """An end-user identifier; accepted, with no effect on the output."""


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None


class ChatMessage(StrictBody):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    response_format: ResponseFormat | None = None
