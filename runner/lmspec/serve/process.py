"""One server process: the uvicorn server of the application, with a drain on SIGTERM instead of
an immediate stop.

>>> server = uvicorn_server(service, export, keys, access_log=False)
>>> server.run(sockets=[listening_socket("127.0.0.1", 8080)])

Both a single-process ``lmspec serve`` (:mod:`.server`) and each of several worker processes
(:mod:`.workers`) run one of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..standard import InferenceService


def uvicorn_server(service: InferenceService, export: Path, keys: list[str], *, access_log: bool,
                   peers: Any = None) -> Any:
    """The uvicorn server of the application, to be run on a listening socket; ``peers``
    (:class:`.state.Peers`) when this process is one of several workers."""
    # Heavy imports only once the configuration is known to be good.
    import uvicorn

    from ..engine.predictor import Loaded, load_export
    from .app import create_app
    from .connections import guarded_protocol
    from .vllm import start_vllm

    def load() -> Loaded:
        if service.spec.engine.name == "vllm":
            upstream = start_vllm(service.spec, export, name=str(service.metadata.name))
            return Loaded(None, upstream=upstream)
        return load_export(export, service.spec)

    asgi, state = create_app(service, load, keys=keys, peers=peers)
    net = service.spec.server
    protocol = guarded_protocol(header_timeout=net.header_timeout_seconds,
                                max_connections=_connection_bound(net.max_connections))
    config = uvicorn.Config(asgi, log_level="info", access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=1, timeout_keep_alive=5, http=protocol)
    server = _server(config, state, service.spec.server.grace_period_seconds)
    state.on_fatal = server.fail
    return server


_DOWN_BODY = b'{"error": "the server is shutting down"}'
_SHUTTING_DOWN = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_DOWN_BODY), _DOWN_BODY))


def answer_backlog(listener: socket.socket, *, budget: float = 2.0) -> None:
    """Answer 503 to every connection still queued on the listening socket, then close it.

    Each request is read before the answer (closing a socket with unread data resets it, and the
    reset can destroy the answer before the client reads it); everything is bounded in time."""
    deadline = time.monotonic() + budget
    listener.setblocking(False)
    try:
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except OSError:  # nothing queued (or the socket is gone)
                return
            with conn:
                conn.settimeout(0.2)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    left = min(int(found.group(1)), 1 << 20) - len(body) if found else 0
                    while left > 0:
                        chunk = conn.recv(min(left, 65536))
                        if not chunk:
                            break
                        left -= len(chunk)
                with contextlib.suppress(OSError):
                    conn.sendall(_SHUTTING_DOWN)
                    conn.shutdown(socket.SHUT_WR)
    finally:
        listener.close()


def _connection_bound(wanted: int) -> int:
    """``server.maxConnections``, within what the process's descriptor limit allows: the soft
    limit is raised to the hard one, and some descriptors stay free for files, pipes and the
    listening socket."""
    try:
        import resource
    except ImportError:  # not on this platform
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted + 64:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, wanted + 64)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft - 64 < wanted:
        logging.getLogger("lmspec.serve").warning(
            "server.maxConnections %d exceeds what %d file descriptors allow; holding at most %d",
            wanted, soft, max(soft - 64, 1))
        return max(soft - 64, 1)
    return wanted


def _server(config: Any, state: Any, grace: float) -> Any:
    """uvicorn's server with a drain on SIGTERM instead of an immediate stop."""
    import uvicorn

    class Server(uvicorn.Server):
        exit_code = 0
        _listener: socket.socket | None = None

        def install_signal_handlers(self) -> None:  # older uvicorn
            pass

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if state.peers is not None and sig == signal.SIGINT:
                # Ctrl-C reaches the whole process group; the supervisor relays it as SIGTERM,
                # and counting it twice here would skip the drain.
                return
            if state.draining or self.should_exit:
                self.force_exit = True
                self.should_exit = True
                return
            state.draining = True
            state.metrics.ready.set(0)
            if state.peers is not None:
                state.peers.mark(False)
            logging.getLogger("lmspec.serve").info(
                "%s: draining %d request(s), up to %.0f s", signal.Signals(sig).name,
                state.in_flight, grace)
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain()))

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self._loop = asyncio.get_running_loop()
            # A second handle on the listening socket keeps it open after uvicorn closes its own,
            # so connections the kernel accepted but uvicorn never took get an answer, not a reset.
            self._listener = sockets[0].dup() if sockets else None
            watch = self._loop.create_task(self._watch_supervisor()) if state.peers else None
            try:
                await super().serve(sockets)
            finally:
                if watch is not None:
                    watch.cancel()
                if self._listener is not None:
                    answer_backlog(self._listener)

        async def _watch_supervisor(self) -> None:
            """A worker whose supervisor is gone (killed outright) drains and exits too."""
            while os.getppid() == state.peers.supervisor:
                await asyncio.sleep(0.5)
            logging.getLogger("lmspec.serve").warning("the supervisor process is gone")
            self.handle_exit(signal.SIGTERM, None)

        async def _drain(self) -> None:
            deadline = time.monotonic() + grace
            while state.in_flight > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if state.in_flight > 0:
                logging.getLogger("lmspec.serve").warning(
                    "grace period over: cancelling %d request(s)", state.in_flight)
            if self._listener is not None:
                # From here the kernel queues (almost) no new connection: clients that connect
                # now are refused, which they can retry, instead of being accepted and then reset.
                with contextlib.suppress(OSError):
                    self._listener.listen(0)
            self.should_exit = True

        def fail(self, exc: BaseException) -> None:
            self.exit_code = 1
            self.should_exit = True

    return Server(config)
