"""Run an InferenceService: resolve its model, read its API keys, serve until SIGTERM.

>>> serve(["examples/iris"], service="iris", port=0)

SIGTERM (or Ctrl-C) starts a drain: readiness turns 503, new requests get 503, requests in
flight (streams included) run to completion within ``server.gracePeriodSeconds``, then the
process exits 0. A second signal exits at once.

With ``server.workers`` > 1 this process binds the socket and supervises that many worker
processes (:mod:`.workers`), each serving the whole API with its own copy of the model.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from ..engine.model_dir import ModelDirError, is_hf_dir, model_dir
from ..standard import InferenceService
from ..validator.core import Manifest, ManifestSet, ValidationFailed, load


class ServeError(Exception):
    """A service that cannot be started; the message says what to fix."""


def pick_service(manifests: ManifestSet, name: str | None) -> Manifest:
    try:
        return manifests.pick("InferenceService", name, option="--service")
    except LookupError as exc:
        raise ServeError(str(exc)) from None


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
    from ..validator.core import skipped_note

    manifests = load(paths)

    if note := skipped_note(manifests.report.skipped):
        print(note, file=sys.stderr)
    chosen = pick_service(manifests, service)
    # The server's pre-flight is the validator's environment layer (`lmspec validate
    # --check-env`) for this service: the engine and the device it asks for exist here.
    from ..preflight import default_checks
    from ..validator.core import check_environment

    check_environment(manifests, [chosen], checks=default_checks())
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
    if spec.engine.name == "vllm" and not is_hf_dir(export_path):
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
    from .process import uvicorn_server

    server = uvicorn_server(obj, export_path, keys, access_log=access_log)
    print(f"lmspec serve: '{obj.metadata.name}' from {export_path} listening on {url}", flush=True)
    server.run(sockets=[sock])
    return int(server.exit_code)


def main(paths: list[str], **kwargs: Any) -> None:
    """CLI entry: clear one-line errors instead of tracebacks."""
    try:
        code = serve(paths, **kwargs)
    except ValidationFailed as exc:
        from ..validator.report import render

        sys.stderr.write(render(exc.report, "text"))
        sys.exit(1)
    except (ServeError, ModelDirError) as exc:
        sys.stderr.write(f"lmspec serve: error: {exc}\n")
        sys.exit(2)
    sys.exit(code)
