"""Request bodies of the Open Inference Protocol v2 (also the application's OpenAPI document).

>>> InferenceRequest.model_validate_json('{"inputs": [{"name": "features", "shape": [1, 4], '
...                                      '"datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}')
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..dataplane import Body, GenerationParameters, StrictBody


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
