"""The application: health and metrics routes, the protocols' routers (:mod:`.oip.routes`,
:mod:`.openai.routes` for causal language models, :mod:`.proxy` for ``engine: vllm``), the model's
loading, the engine's start and the batched ``infer`` passes.

>>> asgi_app, state = create_app(service, loader=lambda: load_export("runs/iris-train/export"))

The model loads in the background after startup: the server is live at once and ready only
after the model is loaded and one warm-up forward pass succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..engine.core import Engine, EngineLimits
from ..engine.predictor import Loaded
from ..standard import InferenceService
from .batcher import Batcher, Policy
from .errors import ApiError, error_response
from .gate import Direct, Gate
from .generate import EngineRunner
from .metrics import Metrics
from .oip.routes import add_routes as add_oip_routes
from .openai.routes import add_routes as add_openai_routes
from .state import Peers, State
from .streaming import ClientGone

if TYPE_CHECKING:
    from ..engine.lm import TextModel

log = logging.getLogger("lmspec.serve")


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
        direct = add_oip_routes(app, state)
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
