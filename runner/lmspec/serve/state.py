"""The server's mutable state, shared by the gate, the routes and the shutdown logic."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.predictor import Loaded
from ..standard import InferenceService
from .batcher import Batcher
from .errors import ApiError
from .metrics import Metrics

if TYPE_CHECKING:
    from ..engine.lm import TextModel
    from .generate import EngineRunner


DRAINING_HEADERS = {"Connection": "close", "Retry-After": "1"}
"""Of a 503 while draining: this connection ends; the client may retry (another replica, or this
service once restarted)."""


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
    text_executor: ThreadPoolExecutor | None = None
    """One thread for text work too slow for the event loop (chat templates, long prompts)."""
    infer: Batcher | None = None
    runner: EngineRunner | None = None
    """The generation engine, once a causal language model is loaded."""
    max_model_length: int = 0
    """Longest sequence the engine takes (``engine.maxModelLength``, else the context length)."""
    on_fatal: Callable[[BaseException], None] | None = None
    peers: Peers | None = None
    """The other worker processes, when ``server.workers`` > 1 (None: a single process)."""

    @property
    def name(self) -> str:
        return str(self.service.metadata.name)

    def serving(self) -> bool:
        """What readiness reports: loaded, warmed up and not draining, and with several workers,
        every other worker too (whichever worker answers the probe, ready means all are)."""
        return self.ready and not self.draining and (self.peers is None or self.peers.all_ready())

    def require_ready(self) -> Loaded:
        """The loaded model, or a 503 while loading or draining."""
        if self.draining:
            raise ApiError(503, "the server is shutting down", type_="server_error",
                           headers=DRAINING_HEADERS)
        if not self.ready or self.loaded is None:
            raise ApiError(503, "the model is not ready yet", type_="server_error",
                           headers={"Retry-After": "1"})
        return self.loaded

    def require_language_model(self) -> TextModel:
        lm = self.require_ready().language_model
        if lm is None:
            raise ApiError(400, f"model '{self.name}' is not a causal language model")
        return lm


@dataclass
class Peers:
    """One worker's view of the worker processes sharing the listening socket: one readiness flag
    per worker in memory shared with the supervisor (which clears the flag of a worker that died).

    >>> peers = Peers(flags=multiprocessing.get_context("spawn").RawArray("b", 2), index=0,
    ...               pid=os.getpid(), supervisor=os.getppid())
    >>> peers.mark(True); peers.all_ready()
    False
    """

    flags: Any
    """A shared array of bytes (``multiprocessing.RawArray``), 1 where that worker is ready."""
    index: int
    pid: int
    supervisor: int
    """Process id of the supervisor; a worker whose parent changes has lost it and drains."""

    def mark(self, ready: bool) -> None:
        self.flags[self.index] = 1 if ready else 0

    def all_ready(self) -> bool:
        return all(self.flags)
