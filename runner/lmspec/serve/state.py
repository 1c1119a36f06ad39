"""The server's mutable state, shared by the gate, the routes and the shutdown logic."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..v1alpha1 import InferenceService
from .batcher import Batcher
from .errors import ApiError
from .metrics import Metrics
from .predictor import LanguageModel, Loaded


@dataclass
class State:
    service: InferenceService
    loader: Callable[[], Loaded]
    keys: list[bytes] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    loaded: Loaded | None = None
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    load_error: BaseException | None = None
    started: int = field(default_factory=lambda: int(time.time()))
    executor: ThreadPoolExecutor | None = None
    infer: Batcher | None = None
    steps: Batcher | None = None
    on_fatal: Callable[[BaseException], None] | None = None

    @property
    def name(self) -> str:
        return str(self.service.metadata.name)

    def require_ready(self) -> Loaded:
        """The loaded model, or a 503 while loading or draining."""
        if self.draining:
            raise ApiError(503, "the server is shutting down", type_="server_error",
                           headers={"Connection": "close"})
        if not self.ready or self.loaded is None:
            raise ApiError(503, "the model is not ready yet", type_="server_error",
                           headers={"Retry-After": "1"})
        return self.loaded

    def require_language_model(self) -> LanguageModel:
        lm = self.require_ready().language_model
        if lm is None:
            raise ApiError(400, f"model '{self.name}' is not a causal language model")
        return lm
