"""Run an InferenceService: resolve its model, read its API keys, serve until SIGTERM.

>>> serve(["examples/iris"], service="iris", port=0)

SIGTERM (or Ctrl-C) starts a drain: readiness turns 503, new requests get 503, requests in
flight (streams included) run to completion within ``server.gracePeriodSeconds``, then the
process exits 0. A second signal exits at once.

With ``server.workers`` > 1 this process binds the socket and supervises that many worker
processes (:mod:`.workers`), each serving the whole API with its own copy of the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..standard import InferenceService
from ..validator.core import Manifest, ManifestSet


class ServeError(Exception):
    """A service that cannot be started; the message says what to fix."""


def pick_service(manifests: ManifestSet, name: str | None) -> Manifest:
    try:
        return manifests.pick("InferenceService", name, option="--service")
    except LookupError as exc:
        raise ServeError(str(exc)) from None


def model_dir(manifests: ManifestSet, service: Manifest, *, paths: list[str] | None = None,
              export: str | None = None) -> Path:
    """The export directory to serve: ``export`` when given (an export directory, or a run
    directory holding ``export/``), else ``spec.model.path`` (relative to the manifest's file)
    or the export of ``spec.model.trainingJob``. Raises :class:`ServeError` if it is not there.
    ``paths`` are the command's inputs, named in the hint to train the model first."""
    from ..model.export import INFO, export_dir_for

    source = service.obj.spec.model
    where = f"{service.file}: InferenceService '{service.name}'"
    if export is not None:
        path = Path(export).resolve()
        if not (path / INFO).is_file() and (path / "export" / INFO).is_file():
            path = path / "export"
        where = "--export"
        hint = "name a run directory or its export/"
    elif source.path is not None:
        path = service.resolve(source.path)
        hint = "export a model there with `lmspec run` first"
    else:
        job = manifests.get("TrainingJob", source.training_job)
        if job is None:
            raise ServeError(f"{where}: spec.model.trainingJob '{source.training_job}' is not among "
                             "the manifests; pass its TrainingJob manifest too")
        path = export_dir_for(job)
        # The same inputs that define the service define the job's model and dataset too.
        inputs = " ".join(shlex.quote(p) for p in (paths or [job.file]))
        several = len(manifests.of_kind("TrainingJob")) > 1
        hint = f"run `lmspec run {inputs}" + (f" --job {job.name}" if several else "") + "` first"
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        task = "causal-lm"  # a Hugging Face format directory: a causal LM (checked when loaded)
    elif not (path / INFO).is_file():
        raise ServeError(f"{where}: no exported model at {path} ({hint})")
    else:
        try:
            task = json.loads((path / INFO).read_text()).get("task")
        except (OSError, ValueError) as exc:
            raise ServeError(f"{path / INFO}: unreadable export info: {exc}") from None
    if "openai" in service.obj.spec.protocols and task != "causal-lm":
        raise ServeError(f"{where}: spec.protocols has 'openai', but the model at {path} is a "
                         f"{task} model, not a causal language model")
    return path


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def api_keys(service: Manifest, where: str) -> list[str]:
    """Accepted keys from the manifest's sources; a missing variable or file is an error."""
    keys: list[str] = []
    for i, source in enumerate(service.obj.spec.auth.api_keys):
        field = f"{where}: spec.auth.apiKeys[{i}]"
        if isinstance(source, str):
            raise ServeError(f"{field}: inline keys are not accepted; use an env or file source")
        if source.env is not None:
            value = os.environ.get(source.env)
            if value is None:
                raise ServeError(f"{field}: environment variable {source.env} is not set")
            found = [k.strip() for k in value.split(",") if k.strip()]
        elif source.file is not None:
            try:
                text = service.resolve(source.file).read_text()
            except OSError as exc:
                raise ServeError(f"{field}: cannot read key file {source.file}: {exc.strerror}") from None
            found = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            found = []
        if not found:
            raise ServeError(f"{field}: the source holds no key")
        keys += found
    return keys


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's listening socket, shared by every worker process.

    Created with protocol ``IPPROTO_TCP`` rather than 0: asyncio sets ``TCP_NODELAY`` on accepted
    connections only when the listening socket says it is TCP, and without it Nagle's algorithm
    holds a response's last segment until the client's delayed ACK (~40 ms a request)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(paths: list[str], *, service: str | None = None, host: str | None = None,
          port: int | None = None, access_log: bool = False, export: str | None = None) -> int:
    """Validate, resolve and serve; returns the exit status (0 after a clean drain)."""
    import lmspec

    manifests = lmspec.load(paths)
    from ..validator.core import skipped_note

    if note := skipped_note(manifests.report.skipped):
        print(note, file=sys.stderr)
    chosen = pick_service(manifests, service)
    # The server's pre-flight is the validator's environment layer (`lmspec validate
    # --check-env`) for this service: the engine and the device it asks for exist here.
    from ..validator.core import check_environment

    check_environment(manifests, [chosen])
    obj: InferenceService = chosen.obj
    spec = obj.spec
    keys = api_keys(chosen, chosen.file)
    host = host or spec.server.host
    port = spec.server.port if port is None else port
    if not keys and not is_loopback(host):
        # The validator warns about a public bind written in the manifest; --host is checked here.
        print(f"lmspec serve: warning: listening on {host} with no API keys: anyone who can reach it "
              "can use it (add spec.auth.apiKeys, or bind to 127.0.0.1)", file=sys.stderr, flush=True)
    export_path = model_dir(manifests, chosen, paths=paths, export=export)
    if spec.engine.name == "vllm" and not ((export_path / "config.json").is_file()
                                           or (export_path / "adapter_config.json").is_file()):
        raise ServeError(f"{chosen.file}: InferenceService '{chosen.name}': engine 'vllm' serves "
                         f"models in Hugging Face format, and {export_path} has no config.json; use "
                         "engine.name: builtin")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sock = listening_socket(host, port)
    family = sock.family
    bound = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{url_host}:{bound}"
    workers = spec.server.workers
    if workers > 1:
        from .workers import supervise

        print(f"lmspec serve: '{obj.metadata.name}' from {export_path} listening on {url} "
              f"({workers} workers)", flush=True)
        return supervise(obj, export_path, keys, sock, access_log=access_log)
    server = uvicorn_server(obj, export_path, keys, access_log=access_log)
    print(f"lmspec serve: '{obj.metadata.name}' from {export_path} listening on {url}", flush=True)
    server.run(sockets=[sock])
    return int(server.exit_code)


def uvicorn_server(service: InferenceService, export: Path, keys: list[str], *, access_log: bool,
                   peers: Any = None) -> Any:
    """The uvicorn server of the application, to be run on a listening socket; ``peers``
    (:class:`.state.Peers`) when this process is one of several workers."""
    # Heavy imports only once the configuration is known to be good.
    import uvicorn

    from .app import create_app
    from .connections import guarded_protocol
    from .predictor import Loaded, load_export
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


def main(paths: list[str], **kwargs: Any) -> None:
    """CLI entry: clear one-line errors instead of tracebacks."""
    import lmspec

    try:
        code = serve(paths, **kwargs)
    except lmspec.ValidationFailed as exc:
        from ..validator.report import render

        sys.stderr.write(render(exc.report, "text"))
        sys.exit(1)
    except ServeError as exc:
        sys.stderr.write(f"lmspec serve: error: {exc}\n")
        sys.exit(2)
    sys.exit(code)
