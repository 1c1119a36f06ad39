"""The application: health, metrics and the Open Inference Protocol v2 routes, plus the
OpenAI-compatible routes (:mod:`.openai_api`) for causal language models.

>>> asgi_app, state = create_app(service, loader=lambda: load_export("runs/iris-train/export"))

The model loads in the background after startup: the server is live at once and ready only
after the model is loaded and one warm-up forward pass succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from .._version import __version__
from ..data.errors import names_phrase, value_phrase
from ..standard import InferenceService
from .batcher import Batcher, Policy, QueueFull
from .common import (
    Body,
    GenerationParameters,
    StrictBody,
    body_schema,
    check_model,
    encode_prompt,
    new_generation,
    parse_body,
    path_version,
    sampling_for,
    with_limits,
)
from .engine import Engine, EngineLimits
from .errors import ApiError, error_body
from .gate import Direct, Gate
from .generate import EngineRunner, Generation
from .metrics import Metrics
from .openai_api import add_routes as add_openai_routes
from .predictor import Loaded, top_k
from .state import Peers, State
from .streaming import ClientGone, EventStream, sse
from .tensors import TensorError, decode_input, encode_output, metadata

if TYPE_CHECKING:
    from .lm import TextModel

log = logging.getLogger("lmspec.serve")


# --- request bodies (also the OpenAPI document) ---------------------------------------------------

class RequestInput(Body):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(Body):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(Body):
    """An OIP v2 inference request (``rest_predict_v2.yaml``: ``inference_request``)."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class GenerateRequest(StrictBody):
    """The OIP ``generate`` extension's request."""

    id: str | None = None
    text_input: str
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)


SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-sent events, `data: {...}` per piece of text.",
          "content": {"text/event-stream": {}}}}


# --- the application ------------------------------------------------------------------------------

def create_app(service: InferenceService, loader: Callable[[], Loaded], *,
               keys: list[str] | None = None, peers: Peers | None = None) -> tuple[Gate, State]:
    """The ASGI application for one InferenceService and the state it shares with the server;
    ``peers`` when it is one of several worker processes (metrics then go to the shared files)."""
    state = State(service=service, loader=loader, keys=[k.encode() for k in keys or []],
                  peers=peers, metrics=Metrics(multiprocess=peers is not None))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # One compute thread: forward passes never overlap, batching does the sharing.
        state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmspec-compute")
        state.text_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmspec-text")
        b = service.spec.batching
        policy = Policy(max_batch_size=b.max_batch_size, max_delay=b.max_queue_delay_microseconds / 1e6,
                        max_queue=b.max_queue_size, enabled=b.enabled)
        state.infer = Batcher(_run_infer(state), state.executor, policy, state.metrics, "infer")
        state.infer.start()
        loading = asyncio.get_running_loop().create_task(_load(state))
        try:
            yield
        finally:
            loading.cancel()
            await state.infer.stop()
            if state.runner is not None:
                await state.runner.stop()
            upstream = state.loaded.upstream if state.loaded is not None else None
            if upstream is not None:
                if upstream.client is not None:
                    await upstream.client.aclose()
                await asyncio.to_thread(upstream.stop)
            state.executor.shutdown(wait=False, cancel_futures=True)
            state.text_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"lmspec serve: {service.metadata.name}", version=__version__,
                  description="Open Inference Protocol v2 and OpenAI-compatible endpoints of an "
                              "lmspec InferenceService.", lifespan=lifespan)
    _error_handlers(app)
    _health_routes(app, state)
    protocols = service.spec.protocols
    if service.spec.engine.name == "vllm":
        from .proxy import add_routes as add_proxy_routes

        add_proxy_routes(app, state)  # vLLM answers; the validator allows only `openai` here
        return Gate(app, state), state
    direct: dict[str, Direct] = {}
    if "oip-v2" in protocols:
        direct = _oip_routes(app, state)
    if "openai" in protocols:
        add_openai_routes(app, state)
    return Gate(app, state, direct=direct), state


async def _load(state: State) -> None:
    try:
        loaded = await asyncio.to_thread(state.loader)
        assert state.executor is not None
        await asyncio.get_running_loop().run_in_executor(state.executor, loaded.warm_up)
        if loaded.language_model is not None:
            state.runner = _engine(state, loaded.language_model)
        else:
            # The compute thread then serves infer passes only, so a short one may run on the
            # loop without ever overlapping another pass over the same model.
            assert state.infer is not None
            state.infer.inline_below = INLINE_BELOW
            state.infer.lone_inline_below = LONE_INLINE_BELOW
            state.infer.alone = lambda: state.in_flight <= 1
    except Exception as exc:
        state.load_error = exc
        log.error("loading the model failed: %s", exc)
        if state.on_fatal is not None:
            state.on_fatal(exc)
        return
    state.loaded = loaded
    # Everything allocated so far (torch, the model, the app) lives as long as the process. Move
    # it out of the collector's reach, so a full collection under load scans only per-request
    # garbage instead of pausing every request behind a scan of the whole heap.
    gc.collect()
    gc.freeze()
    state.ready = True
    state.metrics.ready.set(1)
    if state.peers is not None and not state.draining:
        state.peers.mark(True)
    log.info("model '%s' is ready", state.name)


def _engine(state: State, lm: TextModel) -> EngineRunner:
    """The generation engine over the loaded model, with the manifest's budget."""
    cfg = state.service.spec.engine
    length = cfg.max_model_length or lm.context_length
    if length > lm.context_length:
        raise ValueError(f"engine.maxModelLength {length} exceeds the model's context length "
                         f"{lm.context_length}")
    limits = EngineLimits(max_sequences=cfg.max_sequences, max_waiting=cfg.max_waiting_sequences,
                          max_model_length=length,
                          kv_cache_tokens=cfg.kv_cache_tokens or cfg.max_sequences * length,
                          prefill_chunk_tokens=cfg.prefill_chunk_tokens)
    assert state.executor is not None
    runner = EngineRunner(lm, Engine(lm.model, limits), state.executor, state.metrics)
    state.max_model_length = length
    runner.start()
    return runner


INLINE_BELOW = 0.0005
"""Seconds: infer passes shorter than this run on the event loop (see :mod:`.batcher`)."""
LONE_INLINE_BELOW = 0.01
"""Seconds: the same for a pass of one request while no other request is in flight."""


class Culprit(ValueError):
    """A request that failed alone after its batch failed, while its neighbours succeeded: the
    request is at fault (answered 400), not the server."""


def _run_infer(state: State) -> Callable[[list[dict[str, Any]]], list[Any]]:
    def run(payloads: list[dict[str, Any]]) -> list[Any]:
        assert state.loaded is not None
        predict = state.loaded.require_predictor().predict
        first = payloads[0]
        if len(payloads) == 1:
            return [_attempt(predict, first)]
        if any(p[n].shape[1:] != first[n].shape[1:] for p in payloads for n in first):
            return _alone(predict, payloads)  # ragged (e.g. token ids of different lengths)
        batch = {n: np.concatenate([p[n] for p in payloads]) for n in first}
        try:
            out = predict(batch)
        except Exception:
            # Inputs are checked before they join a batch, but a model may still refuse a value
            # (a category id out of range, an index error deep inside): run each request alone
            # so only the culprit fails and its neighbours get their answers.
            return _alone(predict, payloads)
        results: list[Any] = []
        start = 0
        for p in payloads:
            rows = len(next(iter(p.values())))
            results.append({k: v[start:start + rows] for k, v in out.items()})
            start += rows
        return results
    return run


def _top_ks(outputs: list[RequestOutput], predictor: Any, classes: int) -> dict[str, int]:
    """The ``top_k`` parameter of each requested output that has one (400 when misused)."""
    ks: dict[str, int] = {}
    for o in outputs:
        k = (o.parameters or {}).get("top_k")
        if k is None:
            continue
        if o.name not in getattr(predictor, "derived", ()):
            raise ApiError(400, f"output '{o.name}': top_k applies to a classifier's label and "
                           "probabilities outputs only")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max(classes, 1):
            raise ApiError(400, f"output '{o.name}': top_k must be an integer from 1 to the number of "
                           f"classes ({classes}), not {value_phrase(k)}")
        ks[o.name] = k
    return ks


def _alone(predict: Callable[[dict[str, Any]], dict[str, Any]], payloads: list[dict[str, Any]]) -> list[Any]:
    results = [_attempt(predict, p) for p in payloads]
    if any(not isinstance(r, BaseException) for r in results):
        results = [Culprit(f"the model could not compute this request: {r}")
                   if isinstance(r, BaseException) and not isinstance(r, ValueError) else r
                   for r in results]
    return results


def _attempt(predict: Callable[[dict[str, Any]], dict[str, Any]], payload: dict[str, Any]) -> Any:
    try:
        return predict(payload)
    except Exception as exc:
        return exc


def error_response(request: Request, exc: Exception) -> Response:
    """The answer to an error a route raised, in the protocol's shape (the application's
    exception handlers, and the routes the gate runs directly, answer alike)."""
    def render(status: int, message: str, headers: dict[str, str] | None = None, **kw: Any) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, message, **kw), status_code=status, headers=headers)

    if isinstance(exc, ApiError):
        return render(exc.status, exc.message, exc.headers, type_=exc.type_, param=exc.param, code=exc.code)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        msg = str(first.get("msg", "invalid request"))
        return render(400, f"{where}: {msg}" if where else msg, param=where or None)
    if isinstance(exc, StarletteHTTPException):
        return render(exc.status_code, str(exc.detail),
                      type_="not_found_error" if exc.status_code == 404 else "invalid_request_error",
                      headers=dict(exc.headers or {}))
    if isinstance(exc, ClientGone):
        return Response(status_code=499)
    # Still an answer in the protocol's shape; the gate logs the error.
    return render(500, "internal server error", type_="server_error")


def _error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    for kind in (ApiError, RequestValidationError, StarletteHTTPException, ClientGone, Exception):
        app.add_exception_handler(kind, handle)


def _health_routes(app: FastAPI, state: State) -> None:
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> Response:
        if state.serving():
            return JSONResponse({"ready": True})
        why = ("draining" if state.draining else "loading" if not state.ready
               else "waiting for other workers")
        return JSONResponse({"ready": False, "error": f"not ready: {why}"}, status_code=503)

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _oip_routes(app: FastAPI, state: State) -> dict[str, Direct]:
    @app.get("/v2", tags=["oip-v2"])
    async def server_metadata() -> dict[str, Any]:
        extensions = []
        if state.loaded is not None and state.loaded.language_model is not None:
            extensions.append("generate")
        return {"name": "lmspec", "version": __version__, "extensions": extensions}

    # The version is read from the path (path_version): a declared `version` parameter would be a
    # query parameter on the unversioned routes, which the protocol does not have.
    async def model_metadata(request: Request, model: str) -> dict[str, Any]:
        check_model(state, model, path_version(request))
        loaded = state.require_ready()
        sig = loaded.require_predictor().signature
        return {"name": state.name, "versions": [loaded.version], "platform": "pytorch_lmspec",
                "inputs": [metadata(t) for t in sig.inputs],
                "outputs": [metadata(t) for t in sig.outputs]}

    async def model_ready(request: Request, model: str) -> Response:
        check_model(state, model, path_version(request))
        ok = state.serving()
        return JSONResponse({"name": state.name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request, model: str) -> Response:
        # The body is read and validated here, in one step in pydantic-core (JSON included),
        # rather than declared as a parameter: FastAPI's generic resolution of declared bodies
        # and parameters was about a tenth of the server's time per request on a small model.
        body = parse_body(InferenceRequest, await request.body())
        check_model(state, model, path_version(request))
        loaded = state.require_ready()
        sig = loaded.require_predictor().signature
        known = {t.name for t in sig.inputs}
        given = {t.name: t for t in body.inputs}
        unknown = sorted(set(given) - known)
        if unknown or len(given) != len(body.inputs):
            raise ApiError(400, f"unexpected or repeated input(s) {names_phrase(unknown or list(given), 4)}; "
                           f"the model takes {sorted(known)}")
        arrays: dict[str, Any] = {}
        try:
            for spec in sig.inputs:
                if spec.name not in given:
                    raise ApiError(400, f"missing input '{spec.name}'")
                t = given[spec.name]
                arrays[spec.name] = decode_input(spec, {"datatype": t.datatype, "shape": t.shape,
                                                        "data": t.data})
        except TensorError as exc:
            raise ApiError(400, str(exc)) from None
        rows = {len(a) if a.ndim else 0 for a in arrays.values()}
        n = rows.pop() if len(rows) == 1 else -1
        limit = state.service.spec.batching.max_batch_size
        if n < 1 or n > limit:
            raise ApiError(400, "inputs must share a batch dimension between 1 and "
                           f"batching.maxBatchSize ({limit})")
        out_specs = {t.name: t for t in sig.outputs}
        wanted = [o.name for o in body.outputs] if body.outputs else list(out_specs)
        missing = [w for w in wanted if w not in out_specs]
        if missing:
            raise ApiError(400, f"unknown output(s) {names_phrase(missing, 4)}; the model has "
                           f"{sorted(out_specs)}")
        ks = _top_ks(body.outputs or [], loaded.predictor, int(out_specs[sig.outputs[0].name].shape[-1]))
        check = getattr(loaded.predictor, "check", None)
        if check is not None:
            try:
                check(arrays)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        assert state.infer is not None
        try:
            result = await state.infer.submit(arrays, n, wait=lambda work: with_limits(state, request, work))
        except ValueError as exc:  # the fitted transform refused the values
            raise ApiError(400, str(exc)) from None
        except QueueFull:
            raise ApiError(503, "the server is overloaded (request queue full); retry later",
                           headers={"Retry-After": "1"}) from None
        chosen = [(w, top_k(loaded.predictor, result, w, ks[w]) if w in ks else result[w]) for w in wanted]
        answer: dict[str, Any] = {"model_name": state.name, "model_version": loaded.version}
        if body.id is not None:
            answer["id"] = body.id
        return _infer_response(state, answer, [(w, out_specs[w], value) for w, value in chosen])


    async def generate(model: str, body: GenerateRequest, request: Request) -> Response:
        gen = await _oip_generation(state, model, path_version(request), body, request)
        text = await with_limits(state, request, gen.text())
        return JSONResponse({"model_name": state.name, "model_version": "1", "text_output": text,
                             "finish_reason": gen.finish_reason})

    async def generate_stream(model: str, body: GenerateRequest, request: Request) -> Response:
        gen = await _oip_generation(state, model, path_version(request), body, request)
        timeout = state.service.spec.limits.request_timeout_seconds
        deadline = time.monotonic() + timeout

        async def events() -> AsyncIterator[bytes]:
            head = {"model_name": state.name, "model_version": "1"}
            try:
                async for piece in gen:
                    yield sse({**head, "text_output": piece})
                    if time.monotonic() > deadline:
                        raise ApiError(504, "the request took longer than "
                                       f"limits.requestTimeoutSeconds ({timeout} s)")
            except ApiError as exc:
                yield sse({"error": exc.message})
                return
            yield sse({**head, "text_output": "", "finish_reason": gen.finish_reason})

        return EventStream(events())

    async def direct_infer(scope: Scope, receive: Receive, send: Send) -> None:
        """``infer`` as the gate runs it, past the framework's routing, dependency resolution
        and middleware: for a small model those were a quarter of a request's time. It answers
        exactly as the route does (the route stays, for the OpenAPI document)."""
        request = Request(scope, receive)
        try:
            response = await infer(request, scope["path_params"]["model"])
        except Exception as exc:
            if not isinstance(exc, (ApiError, RequestValidationError, ClientGone)):
                log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
            response = error_response(request, exc)
        await response(scope, receive, send)

    direct: dict[str, Direct] = {}
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        direct[prefix + "/infer"] = direct_infer
        # The handlers read the version themselves, so the document declares it.
        doc: dict[str, Any] = {"parameters": [{"name": "version", "in": "path", "required": True,
                                               "schema": {"type": "string", "title": "Version"}}]} \
            if "{version}" in prefix else {}
        app.add_api_route(prefix, model_metadata, methods=["GET"], tags=["oip-v2"], openapi_extra=doc)
        app.add_api_route(prefix + "/ready", model_ready, methods=["GET"], tags=["oip-v2"], openapi_extra=doc)
        app.add_api_route(prefix + "/infer", infer, methods=["POST"], tags=["oip-v2"],
                          openapi_extra={**body_schema(InferenceRequest), **doc})
        app.add_api_route(prefix + "/generate", generate, methods=["POST"], tags=["oip-v2"], openapi_extra=doc)
        app.add_api_route(prefix + "/generate_stream", generate_stream, methods=["POST"],
                          tags=["oip-v2"], responses=SSE_RESPONSE, openapi_extra=doc)
    return direct


def _infer_response(state: State, answer: dict[str, Any], outputs: list[tuple[str, Any, Any]]) -> Response:
    """The infer answer, within ``limits.maxResponseBytes`` and with finite numbers only (JSON has
    no infinity or NaN, and the Open Inference Protocol defines no encoding for them)."""
    limit = state.service.spec.limits.max_response_bytes
    too_large = ("the response would exceed limits.maxResponseBytes ({} bytes): ask for fewer rows, "
                 "shorter inputs or fewer outputs")
    # Every element takes at least two bytes ("0,"): refuse hopeless cases before encoding.
    if sum(np.asarray(a).size for _, _, a in outputs) * 2 > limit:
        raise ApiError(400, too_large.format(limit))
    encoded = []
    for name, spec, array in outputs:
        values = np.asarray(array)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise ApiError(400, f"output '{name}' is not finite (inf or NaN) for these inputs, and "
                           "JSON cannot carry such values; the inputs are outside the model's range")
        encoded.append(encode_output(spec, name, values))
    answer["outputs"] = encoded
    body = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if len(body) > limit:
        raise ApiError(400, too_large.format(limit))
    return Response(body, media_type="application/json")


async def _oip_generation(state: State, model: str, version: str | None, body: GenerateRequest,
                          request: Request) -> Generation:
    check_model(state, model, version)
    ids = await encode_prompt(state, body.text_input, param="text_input")
    p = body.parameters
    sampling = sampling_for(state, len(ids), max_tokens=p.max_tokens, temperature=p.temperature,
                            top_p=p.top_p, stop=p.stop, seed=p.seed)
    return new_generation(state, request, ids, sampling)
