"""Several server processes on one listening socket (``spec.server.workers`` > 1).

>>> supervise(service, export, keys, sock, access_log=False)     # blocks; the exit status

The supervisor (the ``lmspec serve`` process) binds the socket, then starts ``workers`` worker
processes that all accept on it; the kernel hands each new connection to one of them. Every
worker loads its own copy of the model and runs its own dynamic batcher, exactly like a
single-process server, so the supervisor never touches a request.

- Readiness: the socket accepts connections from the start (liveness answers at once, like a
  single process), but ``/v2/health/ready`` (and ``/v2/models/{m}/ready``) answers 200 only when
  every worker has loaded and warmed up its model, whichever worker answers the probe: the
  workers share one readiness flag each. Until then a request that lands on a worker still
  loading gets 503 with ``Retry-After``, as in a single process.
- Metrics: each worker writes prometheus_client's multiprocess files in a private temporary
  directory, removed when the supervisor exits; ``/metrics`` sums them all (:mod:`.metrics`).
- Every response carries ``X-Lmspec-Worker: <process id>`` of the worker that answered.
- Unless ``OMP_NUM_THREADS`` is set, each worker's torch uses its share of the CPUs
  (CPUs // workers, at least 1) rather than all of them.
- SIGTERM or SIGINT to the supervisor is relayed to every worker as SIGTERM: each stops admitting
  (503), drains its in-flight requests within ``server.gracePeriodSeconds`` and exits; the
  supervisor exits 0 once all have (1 if one had to be killed, 10 s past the grace period). A
  second signal is relayed too, and the workers exit at once.
- A worker that dies while serving (crash, OOM kill, ``kill -9``: it had been ready) is replaced
  at once while the others keep serving; only the requests in the dead worker's hands are lost,
  and readiness says 503 until the replacement is ready. At most ``RESTARTS`` replacements in
  ``RESTART_WINDOW_SECONDS``: beyond that, or for a worker that exits before it was ever ready
  (the model failed to load), the supervisor logs which worker and why, stops the others (with
  the same drain) and exits 1, so a crash loop is not hidden behind a server that looks up and
  whatever runs the server (systemd, Kubernetes) sees the failure.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..standard import InferenceService

log = logging.getLogger("lmspec.serve")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Beyond the grace period, time a worker gets to close its connections and exit before it is
# killed; uvicorn's own shutdown takes about a second.
EXIT_MARGIN_SECONDS = 10.0

# Replacements of dead workers allowed within a sliding window before the supervisor gives up.
RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


# Why a supervisor of our own rather than uvicorn's ``--workers``: uvicorn's supervisor pickles the
# application into each worker (ours is built around a model loader and cannot be), restarts dead
# workers forever (a model that fails to load would loop silently), and stops workers without the
# drain. This one is small: spawn, relay signals, watch for exits, clean up.
def supervise(service: InferenceService, export: Path, keys: list[str], sock: socket.socket, *,
              access_log: bool) -> int:
    """Run ``server.workers`` worker processes on ``sock`` until they stop; the exit status."""
    count = service.spec.server.workers
    grace = service.spec.server.grace_period_seconds
    # Spawned, not forked: each worker starts a clean interpreter (no inherited threads or locks)
    # and imports torch itself; the supervisor stays small. The socket is handed over as a file
    # descriptor when each worker starts.
    ctx = multiprocessing.get_context("spawn")
    flags = ctx.RawArray("b", count)
    metrics_dir = tempfile.mkdtemp(prefix="lmspec-metrics-")
    # The workers inherit the environment at spawn: their metrics files, and unless the user
    # chose, a share of the CPUs each for torch's threads (N workers each using every core would
    # slow all of them down).
    env = {MULTIPROC_ENV: metrics_dir}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, _cpus() // count))
    previous_env = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    procs: list[Any] = []
    live: dict[int, Any] = {}  # index -> process, until it has exited
    stopping: list[float] = []  # the kill deadline, once stopping
    failed = False

    def stop(reason: str) -> None:
        if not stopping:
            stopping.append(time.monotonic() + grace + EXIT_MARGIN_SECONDS)
            log.info("%s: stopping %d worker(s); each drains for up to %.0f s", reason, len(live),
                     grace)
        for proc in list(live.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop(signal.Signals(sig).name)

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("starting %d workers (Prometheus multiprocess files in %s)", count, metrics_dir)
        restarts: list[float] = []

        def spawn(index: int) -> None:
            proc = ctx.Process(target=worker_main, name=f"lmspec-worker-{index}",
                               args=(service, export, keys, sock, flags, index, os.getpid(),
                                     access_log))
            proc.start()
            procs.append(proc)
            live[index] = proc

        for index in range(count):
            if stopping:
                break
            spawn(index)
        if stopping:  # a signal came while starting: relay it to the workers started since
            stop("")
        while live:
            by_sentinel = {proc.sentinel: index for index, proc in live.items()}
            for sentinel in multiprocessing.connection.wait(list(by_sentinel), timeout=0.5):
                index = by_sentinel[sentinel]
                proc = live.pop(index)
                proc.join()
                was_serving = bool(flags[index])
                flags[index] = 0
                _forget(proc.pid, metrics_dir)
                code = proc.exitcode
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS]
                if not stopping and was_serving and len(restarts) < RESTARTS:
                    restarts.append(now)
                    log.error("worker %d (pid %s) %s; replacing it while the others serve", index,
                              proc.pid, _how(code, False))
                    spawn(index)
                    continue
                if not (stopping and code in (0, -signal.SIGTERM)):
                    failed = True
                    log.error("worker %d (pid %s) %s", index, proc.pid, _how(code, bool(stopping)))
                    stop(f"worker {index} failed")
            if live and stopping and time.monotonic() > stopping[0]:
                for index, proc in live.items():
                    log.error("worker %d (pid %s) did not exit in time: killing it", index, proc.pid)
                    proc.kill()
                stopping[0] = float("inf")
                failed = True
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for proc in procs:  # only if the loop above was interrupted
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if failed:
        log.error("stopped after a worker failure")
        return 1
    log.info("all workers stopped")
    return 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _how(code: int | None, stopping: bool) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    when = "while stopping" if stopping else "unexpectedly"
    return f"exited {when} with status {code}"


def _forget(pid: int | None, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges (its counters and histograms still count)."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]


def worker_main(service: InferenceService, export: Path, keys: list[str], sock: socket.socket,
                flags: Any, index: int, supervisor: int, access_log: bool) -> None:
    """One worker process: the single-process server on the shared socket."""
    import sys

    # Ctrl-C reaches every process of the terminal's group; the supervisor relays it as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(levelname)s %(name)s [worker {index}, pid %(process)d]: %(message)s")
    from .process import uvicorn_server
    from .state import Peers

    peers = Peers(flags=flags, index=index, pid=os.getpid(), supervisor=supervisor)
    server = uvicorn_server(service, export, keys, access_log=access_log, peers=peers)
    server.run(sockets=[sock])
    sys.exit(int(server.exit_code))
