"""Load faults replayed against a real ``lmspec serve`` on loopback; prints, per fault, how many
requests the server accepted (the connection was taken), answered (any HTTP status) and lost
(accepted, then closed or reset with no answer).

    python bench/faults.py                          # 2,000 clients, 1,000 slow connections, ~1-2 min
    python bench/faults.py --clients 200 --slow 100 # a quick look

Faults: C concurrent clients at once; S slow connections (half-sent headers) while 100 real
clients are served; SIGTERM while requests are in flight; ``kill -9`` of one of two workers
under load. Only loopback addresses are used, and every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import build_export

BODY = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                               "data": [5.9, 3.0, 4.2, 1.5]}]}).encode()


def start(directory: Path, export: Path, **server: Any) -> tuple[subprocess.Popen[bytes], int, Path]:
    doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "iris"},
           "spec": {"model": {"path": str(export)},
                    "server": {"port": 0, "maxConnections": 4096, **server},
                    "batching": {"maxQueueSize": 4096}}}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "s.yaml").write_text(yaml.safe_dump(doc))
    log = directory / "log"
    proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", str(directory / "s.yaml")],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found and "ready" in log.read_text():
            return proc, int(found.group(1)), log
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


async def request(port: int, tally: dict[str, int], *, timeout: float = 60) -> None:
    """One infer on its own connection; counts accepted / answered / lost."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (TimeoutError, OSError):
        tally["refused"] += 1  # never accepted: the client may retry, nothing was lost
        return
    tally["accepted"] += 1
    try:
        writer.write(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), timeout)
        ok = head.startswith(b"HTTP/1.1 ")
    except (TimeoutError, OSError):
        ok = False
    finally:
        writer.close()
    tally["answered" if ok else "lost"] += 1


def new_tally() -> dict[str, int]:
    return {"accepted": 0, "answered": 0, "lost": 0, "refused": 0}


async def concurrent_clients(port: int, n: int) -> dict[str, int]:
    tally = new_tally()
    await asyncio.gather(*(request(port, tally) for _ in range(n)))
    return tally


async def slow_connections(port: int, n: int) -> dict[str, int]:
    held = []
    for _ in range(n):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\n")
            held.append(w)
        except OSError:
            break
    tally = new_tally()
    await asyncio.gather(*(request(port, tally) for _ in range(100)))
    for w in held:
        w.close()
    return tally


async def under_signal(port: int, n: int, act: Any) -> dict[str, int]:
    tally = new_tally()
    tasks = [asyncio.ensure_future(request(port, tally)) for _ in range(n)]
    await asyncio.sleep(0.05)
    act()
    await asyncio.gather(*tasks)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=1000)
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        export, _ = build_export(Path(tmp) / "export", [32, 32], 100)
        proc, port, _ = start(Path(tmp) / "one", export, headerTimeoutSeconds=2)
        rows.append((f"{args.clients} concurrent clients", asyncio.run(concurrent_clients(port, args.clients))))
        rows.append((f"{args.slow} slow connections + 100 clients", asyncio.run(slow_connections(port, args.slow))))
        rows.append(("SIGTERM with 300 requests in flight",
                     asyncio.run(under_signal(port, 300, lambda: proc.send_signal(signal.SIGTERM)))))
        proc.wait(60)
        proc, port, log = start(Path(tmp) / "two", export, workers=2)
        pids = [int(p) for p in re.findall(r"worker \d+, pid (\d+)\]", log.read_text())]
        victim = pids[0] if pids else None
        # Requests already in the killed worker's hands die with it (SIGKILL gives it no chance to
        # answer); what is measured is that nothing else is lost while it is replaced.
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
        rows.append(("kill -9 of 1 of 2 workers, then 300 requests", asyncio.run(concurrent_clients(port, 300))))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    print(f"| {'fault':<46} | accepted | answered | lost |")
    print("|" + "-" * 48 + "|---------:|---------:|-----:|")
    for name, t in rows:
        print(f"| {name:<46} | {t['accepted']:>8} | {t['answered']:>8} | {t['lost']:>4} |")


if __name__ == "__main__":
    main()
