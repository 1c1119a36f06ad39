"""The ASGI layer in front of the application: drain, authentication, body size, request ids,
in-flight accounting and per-request metrics, all decided before any parsing.

>>> app = Gate(fastapi_app, state)        # what uvicorn runs

With several worker processes (``server.workers`` > 1) every response carries
``X-Lmspec-Worker: <process id>`` of the worker that answered it.

Bodies are read here, up to ``limits.maxBodyBytes`` (Content-Length is checked first, and the
streamed length too, so a lying or chunked client gets 413 as well), then replayed to the app.
Routes given as ``direct`` (route template → ASGI callable) are run by the gate itself, past
the application's routing and middleware, with their path parameters in the scope.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_error
from .state import DRAINING_HEADERS, State

log = logging.getLogger("lmspec.serve")

HEALTH = ("/v2/health/live", "/v2/health/ready")
UNTRACKED = ("/metrics", *HEALTH)
ENDPOINT_CACHE = 256

Direct = Callable[[Scope, Receive, Send], Awaitable[None]]
"""A route the gate runs itself: ``scope["path_params"]`` holds its path parameters."""


def is_health(path: str) -> bool:
    return path in HEALTH or (path.startswith("/v2/models/") and path.endswith("/ready"))


class Gate:
    def __init__(self, app: ASGIApp, state: State, direct: dict[str, Direct] | None = None) -> None:
        self.app = app
        self.state = state
        self._routes: list[Any] = list(getattr(app, "routes", []))
        self._direct = direct or {}
        self._endpoints: dict[tuple[str, str], tuple[str, Direct | None, dict[str, Any]]] = {}
        # The labelled metric of each (endpoint, status): looking one up takes a lock and a
        # few dictionary probes per request; the set is small (templates, not paths).
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def endpoint(self, scope: Scope) -> str:
        """The route template (``/v2/models/{model}/infer``), so labels stay few."""
        return self._route(scope)[0]

    def _route(self, scope: Scope) -> tuple[str, Direct | None, dict[str, Any]]:
        """(route template, the direct route if the gate runs this request itself, path
        parameters)."""
        key = (scope["method"], scope["path"])
        found = self._endpoints.get(key)
        if found is None:
            found = ("unmatched", None, {})
            for route in self._routes:
                match, child = route.matches(scope)
                if match != Match.NONE:
                    path = str(route.path)
                    direct = self._direct.get(path) if match == Match.FULL else None
                    found = (path, direct, dict(child.get("path_params", {})))
                    break
            # Remembered for the few paths clients really use; bounded, since paths are theirs.
            if len(self._endpoints) < ENDPOINT_CACHE:
                self._endpoints[key] = found
        return found

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        value = headers.get(b"authorization", b"")
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        # Compare against every key so timing reveals neither the key nor which one matched.
        ok = False
        for key in self.state.keys:
            ok |= hmac.compare_digest(token.strip(), key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        path: str = scope["path"]
        headers = {k.lower(): v for k, v in scope["headers"]}
        request_id = headers.get(b"x-request-id") or uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")
        endpoint, direct, params = self._route(scope)
        started = time.perf_counter()
        status = [500]
        # With several worker processes, say which one answered (its process id).
        worker = str(state.peers.pid).encode() if state.peers is not None else None

        answering = [False]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answering[0] = True
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
                if worker is not None:
                    message["headers"].append((b"x-lmspec-worker", worker))
                if state.draining and not any(k.lower() == b"connection" for k, _ in message["headers"]):
                    # No next request on this connection: it would race the connection's close.
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        tracked = path not in UNTRACKED
        if tracked:
            state.in_flight += 1
            state.metrics.in_flight.inc()
        try:
            await self._admit(scope, receive, send_with_id, path, headers, direct, params)
        except Exception:
            # A failure the application did not answer itself (it has answered 500 by now).
            # Raised on, it would make the server close the connection without a word, and the
            # client's next request on it would be reset.
            log.exception("%s %s failed", scope["method"], path)
            if not answering[0]:
                await send_error(send_with_id, path, 500, "internal server error", type_="server_error")
        finally:
            if tracked:
                state.in_flight -= 1
                state.metrics.in_flight.dec()
            counter = self._counted.get((endpoint, status[0]))
            if counter is None:
                counter = self._counted[(endpoint, status[0])] = state.metrics.requests.labels(
                    endpoint=endpoint, status=str(status[0]))
            counter.inc()
            timer = self._timed.get(endpoint)
            if timer is None:
                timer = self._timed[endpoint] = state.metrics.request_latency.labels(endpoint=endpoint)
            timer.observe(time.perf_counter() - started)

    async def _admit(self, scope: Scope, receive: Receive, send: Send, path: str,
                     headers: dict[bytes, bytes], direct: Direct | None = None,
                     params: dict[str, Any] | None = None) -> None:
        state = self.state
        auth = state.service.spec.auth
        if state.draining and not is_health(path) and path != "/metrics":
            await send_error(send, path, 503, "the server is shutting down", type_="server_error",
                             headers=DRAINING_HEADERS)
            return
        public = (auth.public_health and is_health(path)) or (auth.public_metrics and path == "/metrics")
        if state.keys and not public and not self.authorized(headers):
            await send_error(send, path, 401, "missing or invalid API key (send 'Authorization: "
                             "Bearer <key>')", code="invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # Every body here is JSON, whatever the client labelled it (curl -d says form data).
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        limit = state.service.spec.limits.max_body_bytes
        too_large = f"request body exceeds limits.maxBodyBytes ({limit} bytes)"
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await send_error(send, path, 413, too_large, headers={"Connection": "close"})
            return
        body = bytearray()
        more = True
        # A slow body would hold a connection (and a drain) for as long as the client likes.
        body_timeout = state.service.spec.server.body_timeout_seconds
        deadline = time.monotonic() + body_timeout
        while more:
            # Waited for in slices, so a drain that starts meanwhile does not wait out a slow body.
            # (Cancelling uvicorn's receive() while it waits loses nothing: it consumes only once
            # a message is there.)
            try:
                async with asyncio.timeout(min(max(deadline - time.monotonic(), 0.0), 0.25)):
                    message = await receive()
            except TimeoutError:
                if state.draining:
                    await send_error(send, path, 503, "the server is shutting down", type_="server_error",
                                     headers=DRAINING_HEADERS)
                    return
                if time.monotonic() >= deadline:
                    await send_error(send, path, 408, "the request body did not arrive within "
                                     f"server.bodyTimeoutSeconds ({body_timeout:g} s)",
                                     headers={"Connection": "close"})
                    return
                continue
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await send_error(send, path, 413, too_large, headers={"Connection": "close"})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        if direct is not None:
            scope["path_params"] = dict(params or {})
            await direct(scope, replay, send)
            return
        await self.app(scope, replay, send)
