"""Error answers in the shape each protocol's clients expect.

>>> error_body("/v2/models/iris/infer", "bad shape")
{'error': 'bad shape'}
>>> error_body("/v1/completions", "bad", type_="invalid_request_error", param="prompt")
{'error': {'message': 'bad', 'type': 'invalid_request_error', 'param': 'prompt', 'code': None}}
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import Send

from .streaming import ClientGone


class ApiError(Exception):
    """An error answer: the handler raises it, the app renders it for the request's protocol."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_
        self.param = param
        self.code = code
        self.headers = headers or {}


def is_openai(path: str) -> bool:
    return path.startswith("/v1/")


def error_body(path: str, message: str, *, type_: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under ``/v1``, else the
    Open Inference Protocol's ``{"error": "<message>"}``."""
    if is_openai(path):
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return {"error": message}


async def send_error(send: Send, path: str, status: int, message: str, *,
                     type_: str = "invalid_request_error", code: str | None = None,
                     headers: dict[str, str] | None = None) -> None:
    """Answer an error straight from ASGI (before the application sees the request)."""
    body = json.dumps(error_body(path, message, type_=type_, code=code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
