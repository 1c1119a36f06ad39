"""Error answers in the shape each protocol's clients expect.

>>> error_body("/v2/models/iris/infer", "bad shape")
{'error': 'bad shape'}
>>> error_body("/v1/completions", "bad", type_="invalid_request_error", param="prompt")
{'error': {'message': 'bad', 'type': 'invalid_request_error', 'param': 'prompt', 'code': None}}
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


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
