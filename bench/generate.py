"""Text generation speed: the old re-run path, ``transformers`` ``generate`` and ``lmspec serve``.

    python bench/generate.py                     # ~2 minutes on 2 cores
    python bench/generate.py --width 512 --layers 8 --new-tokens 256

One run, one model: a llama-style causal LM in Hugging Face format (a BPE tokenizer trained on this
repository's text, random weights; ``--width``/``--layers`` set its size) and one prompt of
``--prompt-tokens`` tokens. Measured, greedy, ``--new-tokens`` tokens per request:

* the old path, in-process: every new token re-runs the model over the whole sequence (no cache);
* ``transformers`` ``generate`` with its KV cache, in-process, one stream;
* ``lmspec serve`` (the builtin engine) over HTTP with streaming, at each ``--concurrency``:
  C clients each send requests one after the other; aggregate tokens/s, p50/p99 time to first
  token and inter-token latency (gaps between streamed chunks).

Ratios printed against baselines of the same run: serve at concurrency 1 / ``generate`` (target
≥ 0.9) and serve at the highest concurrency / serve at concurrency 1 (target ≥ 4). The load
generator runs on the same machine as the server and takes CPU from it; on a shared or loaded
machine the absolute numbers move, the ratios much less. ``--threads`` (default 1) fixes torch's
thread count everywhere: on an oversubscribed machine several OpenMP threads per forward pass
wait for each other and can be many times slower than one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def hf_models() -> Any:
    """The test suite's model maker (``tests/serve/hf_models.py``)."""
    spec = importlib.util.spec_from_file_location("hf_models", ROOT / "tests" / "serve" / "hf_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prompt_ids(tok: Any, n: int) -> list[int]:
    text = (ROOT / "README.md").read_text()
    ids: list[int] = tok(text)["input_ids"][:n]
    return ids


def in_process(model_dir: Path, ids: list[int], new: int, threads: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    from lmspec.engine.lm import load_hf_dir
    from lmspec.v1alpha1.inferenceservice import Placement

    lm = load_hf_dir(model_dir, Placement())
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def rerun() -> int:
        seq = list(ids)
        for _ in range(new):
            seq.append(int(lm.next_token_logits([seq])[0].argmax()))
        return new

    def generate() -> int:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return int(out.shape[1]) - len(ids)

    results = {}
    for name, fn in (("rerun", rerun), ("generate", generate)):
        fn()  # warm-up
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            n = fn()
            best = max(best, n / (time.perf_counter() - t))
        results[name] = best
    return results


def start_server(work: Path, model_dir: Path, max_sequences: int, new: int,
                 threads: int) -> tuple[subprocess.Popen[bytes], str]:
    work.mkdir(parents=True, exist_ok=True)
    doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "bench"},
           "spec": {"model": {"path": str(model_dir)}, "protocols": ["openai"],
                    "generation": {"temperature": 0.0, "maxTokens": new},
                    "engine": {"maxSequences": max_sequences, "maxWaitingSequences": 4 * max_sequences},
                    "limits": {"requestTimeoutSeconds": 600, "maxTokens": new}}}
    (work / "service.yaml").write_text(yaml.safe_dump(doc))
    log = (work / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", str(work / "service.yaml"), "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (work / "server.log").read_text()
        found = re.search(r"listening on (http://\S+)", text)
        if found and "is ready" in text:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"server did not start:\n{(work / 'server.log').read_text()}")


async def one_request(client: Any, ids: list[int], new: int) -> tuple[float, list[float], int, bool]:
    """(time to first token, inter-chunk gaps, completion tokens, every token arrived)."""
    body = {"model": "bench", "prompt": ids, "max_tokens": new, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    arrivals: list[float] = []
    tokens = 0
    async with client.stream("POST", "/v1/completions", json=body) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif event["choices"] and event["choices"][0]["text"]:
                arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return arrivals[0] - start, gaps, tokens, tokens == new


async def closed_loop(url: str, ids: list[int], new: int, concurrency: int, rounds: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await one_request(client, ids, new)  # warm-up
        ttft: list[float] = []
        gaps: list[float] = []
        tokens = 0
        short = 0

        async def user() -> None:
            nonlocal tokens, short
            for _ in range(rounds):
                first, g, n, full = await one_request(client, ids, new)
                ttft.append(first)
                gaps.extend(g)
                tokens += n
                short += not full

        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"tps": tokens / wall, "ttft": ttft, "itl": gaps, "short": short}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1e3 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=160)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client per row")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, in-process and in the server (OMP_NUM_THREADS)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="lmspec-bench-gen-") as tmp:
        model_dir = hf_models().llama_dir(Path(tmp) / "llama", width=args.width, layers=args.layers,
                                          heads=max(1, args.width // 64), context_length=1024)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
        ids = prompt_ids(tok, args.prompt_tokens)
        print(f"model: llama-style, width {args.width}, {args.layers} layers, {params / 1e6:.1f}M parameters; "
              f"prompt {len(ids)} tokens, {args.new_tokens} new tokens per request, greedy; "
              f"{os.cpu_count()} CPUs, {args.threads} torch thread(s)", flush=True)
        base = in_process(model_dir, ids, args.new_tokens, args.threads)
        rows = [("old re-run path (no cache), 1 stream", base["rerun"], None),
                ("transformers generate (KV cache), 1 stream", base["generate"], None)]
        proc, url = start_server(Path(tmp) / "server", model_dir, max(levels), args.new_tokens, args.threads)
        try:
            for c in levels:
                r = asyncio.run(closed_loop(url, ids, args.new_tokens, c, args.rounds))
                rows.append((f"lmspec serve, concurrency {c}", r["tps"], r))
        finally:
            proc.terminate()
            proc.wait(60)

    print("\n| path | tokens/s | TTFT p50 / p99 (ms) | inter-token p50 / p99 (ms) |")
    print("|---|---:|---:|---:|")
    for name, tps, r in rows:
        if r is None:
            print(f"| {name} | {tps:.0f} | | |")
        else:
            note = f" ({r['short']} ended early at EOS)" if r["short"] else ""
            print(f"| {name}{note} | {tps:.0f} | {pct(r['ttft'], 0.5):.1f} / {pct(r['ttft'], 0.99):.1f} | "
                  f"{pct(r['itl'], 0.5):.1f} / {pct(r['itl'], 0.99):.1f} |")
    serve = {c: row[1] for c, row in zip(levels, rows[2:], strict=True)}
    print(f"\nsingle stream: serve / generate = {serve[levels[0]] / base['generate']:.2f} (target >= 0.9); "
          f"generate / re-run = {base['generate'] / base['rerun']:.2f}")
    print(f"aggregate: serve at concurrency {levels[-1]} / concurrency {levels[0]} = "
          f"{serve[levels[-1]] / serve[levels[0]]:.2f} (target >= 4)")


if __name__ == "__main__":
    main()
