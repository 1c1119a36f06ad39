"""Closed-loop load test of ``lmspec serve`` (dynamic batching on and off) against KServe's
``ModelServer`` on the same exported weights, at several concurrencies.

    .venv/bin/python bench/serve.py --kserve-python .venv-kserve/bin/python   # ~6 minutes
    .venv/bin/python bench/serve.py --hidden 32,32     # one model size; no KServe baseline

KServe is the baseline: ``bench/kserve_server.py`` serves the same export with the same
``Exported.predict`` inside a ``kserve.Model``, started with the interpreter of an environment
where ``kserve`` is installed (``--kserve-python``, or ``LMSPEC_BENCH_KSERVE_PYTHON``); without
one the KServe rows are skipped and the output says so. Ratios are printed against it.

Each of C clients sends one OIP v2 infer request (one iris row), waits for the answer, and sends
the next; requests/s, p50 and p99 latency are measured per row of the table, in several short
rounds of which each row reports the median. Every round starts each server afresh and measures it
once at every level, the order rotating, so neither one unlucky few seconds on a shared machine
nor one unlucky process decides a ratio. The load generator is
one asyncio process speaking plain HTTP/1.1 over keep-alive connections, so that on a small machine
it takes as little CPU as possible from the server it measures.

The model is the iris MLP (``examples/iris``) with its real preprocessing and briefly trained
weights, but, by default, with wider hidden layers than the example's [32, 32]: a forward pass of
the example itself costs microseconds, far less than the HTTP handling around it, so batching could
not matter. By default both sizes are measured: hidden 4 × 2048 and the example's 32,32. With
``examples/iris/runs/iris-train/export`` present the latter is that export, served as is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROW = [5.9, 3.0, 4.2, 1.5]


def build_export(out: Path, hidden: list[int], steps: int) -> tuple[Path, str]:
    """An iris MLP export with the Dataset's fitted transform; returns (path, description)."""
    import numpy as np
    import torch

    import lmspec
    from lmspec.data import prepare
    from lmspec.model.build import build_model
    from lmspec.model.export import save_export

    manifests = lmspec.load([str(ROOT / "examples" / "iris")])
    dataset, model_m = manifests.get("Dataset", "iris"), manifests.get("Model", "iris-mlp")
    assert dataset is not None and model_m is not None
    existing = ROOT / "examples" / "iris" / "runs" / "iris-train" / "export"
    if hidden == [32, 32] and (existing / "export.json").is_file():
        return existing, f"iris MLP hidden [32, 32], trained by `lmspec run` ({existing})"
    arch = model_m.obj.spec.architecture.model_copy(update={"hidden_sizes": hidden})
    # The network's own output only: both servers answer the logits and nothing derived.
    signature = model_m.obj.spec.signature.model_copy(
        update={"outputs": model_m.obj.spec.signature.outputs[:1]})
    manifest = model_m.obj.model_copy(update={"spec": model_m.obj.spec.model_copy(
        update={"architecture": arch, "signature": signature})})
    data = prepare(dataset.obj, dataset.base_dir, model_task="classification")
    torch.manual_seed(0)
    model = build_model(manifest.spec)
    x = torch.from_numpy(np.asarray(data.train.inputs, dtype=np.float32))
    y = torch.from_numpy(np.asarray(data.train.targets, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        test_x = torch.from_numpy(np.asarray(data.test.inputs, dtype=np.float32))
        acc = float((model(test_x).argmax(1).numpy() == np.asarray(data.test.targets)).mean())
    params = sum(p.numel() for p in model.parameters())
    save_export(out, manifest, model.state_dict(), data.transform.state_dict(), job="bench",
                metrics={"accuracy": acc})
    return out, (f"iris MLP widened to hidden {hidden} ({params:,} parameters), trained {steps} "
                 f"full-batch steps in-process, test accuracy {acc:.2f}")


def forward_cost(export: Path, threads: int) -> str:
    import numpy as np
    import torch

    from lmspec.model.export import load_exported

    ex = load_exported(export)
    torch.set_num_threads(threads)
    parts = []
    for rows in (1, 32, 64):
        x = {"features": np.tile(np.array([ROW], np.float32), (rows, 1))}
        ex.predict(x)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.3:
            ex.predict(x)
            n += 1
        parts.append(f"batch {rows}: {(time.perf_counter() - t) / n * 1e3:.2f} ms")
    return (f"forward pass incl. preprocessing, in-process, {threads} torch thread(s): "
            + ", ".join(parts))


def start_server(work: Path, export: Path, batching: dict[str, Any],
                 threads: int) -> tuple[subprocess.Popen[bytes], str, int]:
    work.mkdir(parents=True, exist_ok=True)
    doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService",
           "metadata": {"name": "iris"},
           "spec": {"model": {"path": str(export)}, "batching": batching,
                    "limits": {"requestTimeoutSeconds": 60}}}
    (work / "service.yaml").write_text(yaml.safe_dump(doc))
    log = (work / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", str(work / "service.yaml"),
                             "--port", "0"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on http://([\d.]+):(\d+)", (work / "server.log").read_text())
        if found and "is ready" in (work / "server.log").read_text():
            return proc, found.group(1), int(found.group(2))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"server did not start:\n{(work / 'server.log').read_text()}")


def start_kserve(work: Path, export: Path, python: str,
                 threads: int) -> tuple[subprocess.Popen[bytes], str, int]:
    """``bench/kserve_server.py`` on a free port, with ``python`` (an environment with kserve)."""
    import socket
    import sysconfig
    import urllib.request

    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # lmspec and torch come from this environment, after KServe's own packages.
    extra = os.pathsep.join(dict.fromkeys([str(ROOT / "runner"), sysconfig.get_paths()["purelib"],
                                           sysconfig.get_paths()["platlib"]]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LMSPEC_BENCH_EXTRA_PATH": extra}
    env.pop("PYTHONPATH", None)
    log = (work / "kserve.log").open("w")
    proc = subprocess.Popen([python, str(ROOT / "bench" / "kserve_server.py"), str(export), str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/iris/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, "127.0.0.1", port
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the KServe server did not start:\n{(work / 'kserve.log').read_text()}")


async def _client(host: str, port: int, request: bytes, stop_at: float, record_from: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            t1 = time.perf_counter()
            if t0 >= record_from:
                if head.startswith(b"HTTP/1.1 200"):
                    latencies.append(t1 - t0)
                else:
                    errors.append(1)
    finally:
        writer.close()


async def closed_loop(host: str, port: int, concurrency: int, warmup: float,
                      duration: float) -> tuple[float, float, float, int]:
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                   "data": ROW}]}).encode()
    request = (f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: {host}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    start = time.perf_counter()
    latencies: list[float] = []
    errors: list[int] = []
    record_from, stop_at = start + warmup, start + warmup + duration
    await asyncio.gather(*(_client(host, port, request, stop_at, record_from, latencies, errors)
                           for _ in range(concurrency)))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / duration, statistics.median(latencies) * 1e3, p99 * 1e3, len(errors)


def _turned(names: list[str], k: int) -> list[str]:
    """``names`` rotated by ``k``."""
    k %= len(names)
    return names[k:] + names[:k]


def measure(tmp: Path, hidden: list[int], args: argparse.Namespace, levels: list[int],
            kserve_python: str | None) -> None:
    """Every server and concurrency on one model size; prints the table and the ratios."""
    export, described = build_export(tmp / "export", hidden, args.steps)
    print(f"\nmodel: {described}")
    print(forward_cost(export, args.threads))
    modes: dict[str, dict[str, Any] | None] = {
        "on": {"enabled": True, "maxBatchSize": args.max_batch_size,
               "maxQueueDelayMicroseconds": args.delay_us, "maxQueueSize": 4096},
        "off": {"enabled": False, "maxBatchSize": args.max_batch_size, "maxQueueSize": 4096},
    }
    if kserve_python is not None:
        modes["kserve"] = None
    results: dict[tuple[str, int], tuple[float, float, float, int]] = {}
    runs: dict[tuple[str, int], list[tuple[float, float, float, int]]] = {}
    names = list(modes)
    # Each round starts every server afresh and measures every level, each server in turn: the
    # rows compared are seconds apart, not minutes, so a machine whose speed drifts (shared hosts
    # do) moves them alike; and each figure is the median over several processes of each
    # server, since two processes of the same server, started the same way, can differ by 5 % or
    # more on a memory-bound model (where their weights happened to land).
    for r in range(args.rounds):
        servers: dict[str, tuple[subprocess.Popen[bytes], str, int]] = {}
        try:
            for mode in _turned(names, r):
                batching = modes[mode]
                work = tmp / f"{mode}-{r}"
                if batching is None:
                    assert kserve_python is not None
                    servers[mode] = start_kserve(work, export, kserve_python, args.threads)
                else:
                    servers[mode] = start_server(work, export, batching, args.threads)
            for i, c in enumerate(levels):
                # The order turns from level to level and round to round, so no server is
                # always measured first.
                for mode in _turned(names, i + r):
                    _, host, port = servers[mode]
                    runs.setdefault((mode, c), []).append(
                        asyncio.run(closed_loop(host, port, c, args.warmup, args.duration / args.rounds)))
        finally:
            for proc, _, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _, _ in servers.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        print(f"  round {r + 1} of {args.rounds}: fresh servers, every level measured", flush=True)
    for key, measured in runs.items():
        # The median round of each figure; errors are summed, never hidden.
        results[key] = (statistics.median(x[0] for x in measured), statistics.median(x[1] for x in measured),
                        statistics.median(x[2] for x in measured), sum(x[3] for x in measured))
    print(f"\n{'server':<14}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for mode in modes:
        label = "kserve" if mode == "kserve" else f"lmspec {mode}"
        for c in levels:
            rps, p50, p99, errs = results[(mode, c)]
            print(f"{label:<14}{c:>8}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}{errs:>8}")
    if ("on", 32) in results and ("off", 32) in results:
        on, off = results[("on", 32)], results[("off", 32)]
        print(f"\nat 32 clients: batching on/off throughput {on[0] / off[0]:.2f}x; "
              f"p99 {on[2]:.1f} ms (on) vs {off[2]:.1f} ms (off)")
    if kserve_python is None:
        print("KServe baseline skipped: pass --kserve-python (see the README's Benchmarks section)")
        return
    for c in levels:
        k = results[("kserve", c)][0]
        print(f"vs KServe at {c} client(s): lmspec batching on {results[('on', c)][0] / k:.2f}x, "
              f"off {results[('off', c)][0] / k:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", action="append",
                        help="hidden layer widths of the MLP, e.g. 32,32; repeat for several sizes "
                             "[default: 2048,2048,2048,2048 and 32,32]")
    parser.add_argument("--steps", type=int, default=30, help="training steps for the weights")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds measured per row, split over the rounds")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds, each with freshly started servers measured once at every "
                             "level; each row reports the median round")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds discarded per round")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--delay-us", type=int, default=2000, help="maxQueueDelayMicroseconds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each server (OMP_NUM_THREADS); on 2 shared cores "
                             "one compute thread avoids OpenMP spinning against the event loop")
    parser.add_argument("--kserve-python", default=os.environ.get("LMSPEC_BENCH_KSERVE_PYTHON"),
                        help="python of an environment with kserve installed, for the baseline "
                             "[env LMSPEC_BENCH_KSERVE_PYTHON]")
    args = parser.parse_args()
    sizes = [[int(h) for h in spec.split(",")] for spec in (args.hidden or ["2048,2048,2048,2048", "32,32"])]
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"machine: {os.cpu_count()} CPU(s); servers and load generator share them")
    for hidden in sizes:
        with tempfile.TemporaryDirectory(prefix="lmspec-bench-") as tmp:
            measure(Path(tmp), hidden, args, levels, args.kserve_python)


if __name__ == "__main__":
    main()
