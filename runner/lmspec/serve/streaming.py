"""Work that stops when the client goes away, and server-sent event streams.

>>> return EventStream(events())          # data: {...}\\n\\n chunks

uvicorn keeps accepting ``send`` after a client disconnects, so a plain streaming response would
keep generating for nobody. Both helpers here race the work against ``http.disconnect`` and cancel
the work (and with it any queued forward pass) the moment the client is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _race(task: asyncio.Future[Any], watch: Awaitable[None]) -> None:
    """Wait until ``task`` ends or the client disconnects; whichever is left is cancelled."""
    watcher = asyncio.ensure_future(watch)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; cancel it and raise :class:`ClientGone` if the client disconnects first."""
    task = asyncio.ensure_future(work)
    await _race(task, _disconnected(request.receive))
    if task.cancelled():
        raise ClientGone()
    return task.result()


def sse(data: Any) -> bytes:
    """One server-sent event carrying JSON (or a literal like ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class EventStream(Response):
    """A ``text/event-stream`` response that stops producing events when the client leaves."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        task = asyncio.ensure_future(pump())
        try:
            await _race(task, _disconnected(receive))
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
