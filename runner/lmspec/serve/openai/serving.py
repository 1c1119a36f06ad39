"""The OpenAI-compatible API's work, with no HTTP in it: plain values in (parsed bodies, the loaded
language model, the engine's generations), plain values or :class:`..errors.ApiError` out;
:mod:`.routes` wires it to HTTP.

>>> check_request(body, "tiny-lm", max_sequences=8)
>>> sampling = samplings(service.spec, 256, lm, ids, body, body.max_tokens, body.logprobs)

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
(:class:`..dataplane.GenerationParameters`); prompt and message text is encoded so that it never
becomes a control token (:mod:`lmspec.engine.client_text`).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..dataplane import check_prompt, check_text, sampling_for
from ..errors import ApiError
from ..generate import Generation, Sampling
from .protocol import ChatMessage, ChatRequest, CompletionRequest, SamplingRequest

if TYPE_CHECKING:
    from ...engine.lm import TextModel
    from ...standard import InferenceServiceSpec


# --- requests ----------------------------------------------------------------------------------

def check_request(body: SamplingRequest, name: str, max_sequences: int) -> None:
    """What every request is checked for first: the model it names is the one served (``name``),
    ``n`` within ``engine.maxSequences``, and no parameter this server does not implement."""
    if body.model != name:
        raise ApiError(404, f"The model `{body.model}` does not exist.", param="model",
                       code="model_not_found")
    if body.n > max_sequences:
        raise ApiError(400, f"n {body.n} exceeds engine.maxSequences ({max_sequences})", param="n")
    for field in ("presence_penalty", "frequency_penalty"):
        if getattr(body, field) != 0:
            raise ApiError(400, f"{field} is not supported (only 0)", param=field)
    if body.logit_bias:
        raise ApiError(400, "logit_bias is not supported", param="logit_bias")


def check_completion(body: CompletionRequest) -> None:
    """Completions parameters other than those of :func:`check_request` this server refuses."""
    if body.best_of is not None and body.best_of != body.n:
        raise ApiError(400, "best_of is not supported (other than best_of = n)", param="best_of")
    if body.suffix:
        raise ApiError(400, "suffix is not supported", param="suffix")


def completion_prompt(body: CompletionRequest) -> str | list[int]:
    """The prompt of a completions request: its text (one prompt per request), or its token ids."""
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise ApiError(400, "only one prompt per request is supported", param="prompt")
        prompt = str(prompt[0])
    return [int(i) for i in prompt] if isinstance(prompt, list) else prompt


def check_stream(body: CompletionRequest) -> None:
    """What a streamed completion cannot do."""
    if body.echo and body.logprobs is not None:
        raise ApiError(400, "echo with logprobs is not supported when streaming", param="echo")


def check_chat(body: ChatRequest) -> None:
    """Chat parameters that contradict each other."""
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")


def check_chat_template(lm: TextModel, name: str) -> None:
    """The model can render a conversation: its tokenizer has a chat template."""
    if not lm.has_chat_template:
        raise ApiError(400, f"model '{name}' has no chat template (its tokenizer defines "
                       "none); use /v1/completions, or serve a model whose tokenizer files "
                       "carry a chat_template", param="messages", code="no_chat_template")


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


def chat_prompt(lm: TextModel, messages: list[dict[str, Any]]) -> list[int]:
    """The token ids of a conversation, rendered by the model's chat template (a program over the
    client's text: the router runs this off the event loop)."""
    try:
        return lm.chat_ids(messages)
    except Exception as exc:  # the template itself refused the conversation
        raise ApiError(400, f"the chat template cannot render these messages: {exc}",
                       param="messages") from None


def chat_max_tokens(body: ChatRequest) -> int | None:
    return body.max_completion_tokens or body.max_tokens


def chat_logprobs(body: ChatRequest) -> int | None:
    """Alternatives per token to report (None: no log-probabilities)."""
    return (body.top_logprobs or 0) if body.logprobs else None


def samplings(spec: InferenceServiceSpec, max_model_length: int, lm: TextModel, ids: list[int],
              body: SamplingRequest, max_tokens: int | None, logprobs: int | None,
              echo: bool = False) -> list[Sampling]:
    """The sampling settings of each of the request's ``n`` generations (``seed + i`` seeds the
    i-th), after the prompt's ids and the settings were checked."""
    check_prompt(lm, ids)
    sampling = sampling_for(spec, max_model_length, len(ids), max_tokens=max_tokens,
                            temperature=body.temperature, top_p=body.top_p, stop=body.stop,
                            seed=body.seed, logprobs=logprobs, echo=echo)
    return [sampling if body.seed is None else dataclasses.replace(sampling, seed=body.seed + i)
            for i in range(body.n)]


# --- answers -----------------------------------------------------------------------------------

def usage(gens: list[Generation]) -> dict[str, int]:
    done = sum(g.completion_tokens for g in gens)
    prompt = gens[0].prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


class Completion:
    """The answer to a completions request, whole or as stream chunks."""

    def __init__(self, name: str, lm: TextModel, ids: list[int], body: CompletionRequest) -> None:
        self.name = name
        self.lm = lm
        self.body = body
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        self.echoed = lm.decode(ids) if body.echo else ""

    def logprobs(self, gen: Generation, since: int, with_prompt: bool) -> dict[str, Any] | None:
        if self.body.logprobs is None:
            return None
        lm = self.lm
        infos = (gen.prompt_info if with_prompt else []) + gen.tokens[since:gen.reported]
        texts = [lm.token_text(t.id) for t in infos]
        offsets, at = [], len(self.echoed) if since == 0 and not with_prompt else 0
        for text in texts:
            offsets.append(at)
            at += len(text)
        return {"tokens": texts,
                "token_logprobs": [t.logprob for t in infos],
                "top_logprobs": [({lm.token_text(i): lp for i, lp in t.top} if t.logprob is not None
                                  else None) for t in infos] if self.body.logprobs else None,
                "text_offset": offsets}

    def chunk(self, index: int, text: str, finish: str | None, first: bool, gen: Generation,
              since: int) -> dict[str, Any]:
        lp = self.logprobs(gen, since, False) if text else None
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.name,
                "choices": [{"index": index, "text": (self.echoed if first and text else "") + text,
                             "logprobs": lp, "finish_reason": finish}]}

    def response(self, gens: list[Generation], texts: list[str]) -> dict[str, Any]:
        choices = [{"index": i, "text": self.echoed + text, "logprobs": self.logprobs(g, 0, self.body.echo),
                    "finish_reason": g.finish_reason}
                   for i, (g, text) in enumerate(zip(gens, texts, strict=True))]
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.name, "choices": choices, "usage": usage(gens)}


class ChatCompletion:
    """The answer to a chat completions request, whole or as stream chunks."""

    def __init__(self, name: str, lm: TextModel, logprobs: int | None) -> None:
        self.name = name
        self.lm = lm
        self.k = logprobs
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def logprobs(self, gen: Generation, since: int) -> dict[str, Any] | None:
        if self.k is None:
            return None

        def entry(token: int, lp: float | None) -> dict[str, Any]:
            text = self.lm.token_text(token)
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}

        return {"content": [{**entry(t.id, t.logprob),
                             "top_logprobs": [entry(i, lp) for i, lp in t.top]}
                            for t in gen.tokens[since:gen.reported]]}

    def chunk(self, index: int, text: str, finish: str | None, first: bool, gen: Generation,
              since: int) -> dict[str, Any]:
        delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
        if finish is not None and not first:
            delta = {}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.name,
                "choices": [{"index": index, "delta": delta,
                             "logprobs": self.logprobs(gen, since) if text else None,
                             "finish_reason": finish}]}

    def response(self, gens: list[Generation], texts: list[str]) -> dict[str, Any]:
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                         "logprobs": self.logprobs(g, 0), "finish_reason": g.finish_reason}
                        for i, (g, text) in enumerate(zip(gens, texts, strict=True))],
            "usage": usage(gens)}
