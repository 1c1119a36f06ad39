"""The Open Inference Protocol's router: parses HTTP, calls :mod:`.dataplane`, writes the answer.

>>> direct = add_routes(app, state)       # /v2, /v2/models/{model}[/versions/{version}]/...
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..batcher import QueueFull
from ..common import body_schema, encode_prompt, new_generation, parse_body, path_version, with_limits
from ..dataplane import check_model
from ..errors import ApiError, error_response
from ..gate import Direct
from ..generate import Generation
from ..state import State
from ..streaming import ClientGone, EventStream, sse
from . import dataplane
from .protocol import GenerateRequest, InferenceRequest

log = logging.getLogger("lmspec.serve")

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-sent events, `data: {...}` per piece of text.",
          "content": {"text/event-stream": {}}}}


def add_routes(app: FastAPI, state: State) -> dict[str, Direct]:
    """The OIP routes on ``app``; returns the routes the gate runs directly (see :mod:`..gate`)."""
    @app.get("/v2", tags=["oip-v2"])
    async def server_metadata() -> dict[str, Any]:
        return dataplane.server_metadata(state.loaded)

    # The version is read from the path (path_version): a declared `version` parameter would be a
    # query parameter on the unversioned routes, which the protocol does not have.
    async def model_metadata(request: Request, model: str) -> dict[str, Any]:
        check_model(state.name, model, path_version(request))
        return dataplane.model_metadata(state.name, state.require_ready())

    async def model_ready(request: Request, model: str) -> Response:
        check_model(state.name, model, path_version(request))
        ok = state.serving()
        return JSONResponse({"name": state.name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request, model: str) -> Response:
        # The body is read and validated here, in one step in pydantic-core (JSON included),
        # rather than declared as a parameter: FastAPI's generic resolution of declared bodies
        # and parameters was about a tenth of the server's time per request on a small model.
        body = parse_body(InferenceRequest, await request.body())
        check_model(state.name, model, path_version(request))
        loaded = state.require_ready()
        predictor = loaded.require_predictor()
        work = dataplane.infer_inputs(body, predictor, state.service.spec.batching.max_batch_size)
        assert state.infer is not None
        try:
            result = await state.infer.submit(work.arrays, work.rows,
                                              wait=lambda w: with_limits(state, request, w))
        except ValueError as exc:  # the fitted transform refused the values
            raise ApiError(400, str(exc)) from None
        except QueueFull:
            raise ApiError(503, "the server is overloaded (request queue full); retry later",
                           headers={"Retry-After": "1"}) from None
        outputs = dataplane.infer_outputs(predictor, result, work)
        limit = state.service.spec.limits.max_response_bytes
        return Response(dataplane.infer_answer(state.name, loaded.version, body.id, outputs, limit),
                        media_type="application/json")

    async def generation(model: str, body: GenerateRequest, request: Request) -> Generation:
        check_model(state.name, model, path_version(request))
        ids = await encode_prompt(state, body.text_input, param="text_input")
        sampling = dataplane.generate_sampling(state.service.spec, state.max_model_length, len(ids),
                                               body.parameters)
        return new_generation(state, request, ids, sampling)

    async def generate(model: str, body: GenerateRequest, request: Request) -> Response:
        gen = await generation(model, body, request)
        text = await with_limits(state, request, gen.text())
        return JSONResponse(dataplane.generate_answer(state.name, text, gen.finish_reason))

    async def generate_stream(model: str, body: GenerateRequest, request: Request) -> Response:
        gen = await generation(model, body, request)
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
