"""Gateway routes that relay the OpenAI-compatible API to another server (``engine: vllm``).

>>> add_routes(app, state)      # /v1/... → state.loaded.upstream, streams included

The gate in front has already authenticated the request, checked its body size, counted it and
refused it while draining; here the body is relayed with the upstream's own key. Answers come
back unchanged (status, JSON or server-sent events). A relayed stream is read chunk by chunk and
closed as soon as the client leaves, which makes the upstream abort the request; a non-streamed
request is bounded by ``limits.requestTimeoutSeconds`` like any other.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .common import with_limits
from .errors import ApiError
from .state import State
from .streaming import EventStream

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
              "authorization", "host"}


def add_routes(app: FastAPI, state: State) -> None:
    async def relay(path: str, request: Request) -> Response:
        import httpx

        upstream = state.require_ready().upstream
        if upstream is None:
            raise ApiError(503, "the upstream engine is not running", type_="server_error")
        if upstream.client is None:
            upstream.client = httpx.AsyncClient(base_url=upstream.url, timeout=None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["authorization"] = f"Bearer {upstream.key}"
        outgoing = upstream.client.build_request(request.method, "/v1/" + path, headers=headers,
                                                 params=request.query_params, content=await request.body())
        arrived = time.perf_counter()
        try:
            answer = await with_limits(state, request, upstream.client.send(outgoing, stream=True))
        except httpx.TransportError as exc:
            raise ApiError(502, f"the upstream engine did not answer: {exc}", type_="server_error") from None
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        if answer.status_code == 200 and answer.headers.get("content-type", "").startswith("text/event-stream"):
            async def chunks() -> AsyncIterator[bytes]:
                first = True
                try:
                    async for chunk in answer.aiter_raw():
                        if first:
                            state.metrics.time_to_first_token.observe(time.perf_counter() - arrived)
                            first = False
                        yield chunk
                finally:
                    await answer.aclose()

            return EventStream(chunks(), headers={k: v for k, v in kept.items() if k.lower() != "content-type"})
        try:
            body: Any = await with_limits(state, request, answer.aread())
        finally:
            await answer.aclose()
        return Response(body, status_code=answer.status_code, headers=kept)

    app.add_api_route("/v1/{path:path}", relay, methods=["GET", "POST"], tags=["openai"])
