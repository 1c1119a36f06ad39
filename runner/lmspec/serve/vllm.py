"""``engine: vllm``: vLLM's OpenAI-compatible server as a subprocess on loopback, with lmspec's
gateway in front of it.

>>> args = vllm_args(service.spec, Path("export-hf"), name="chat", port=8100, key="internal")
>>> upstream = start_vllm(service.spec, Path("export-hf"), name="chat")   # waits for /health
>>> upstream.stop()

vLLM binds to 127.0.0.1 on a free port and gets a random API key of its own, known only to the
gateway: vLLM's ``--api-key`` guards only some of its paths, so it is never exposed. Every client
request goes through lmspec's gate (authentication on every path, body limit, request ids,
metrics, drain) and is relayed to vLLM, streams included; a client that goes away closes the
relayed stream, which makes vLLM abort the request.

Arguments come from the manifest: ``engine.maxModelLength`` → ``--max-model-len``,
``engine.maxSequences`` → ``--max-num-seqs``, ``engine.prefillChunkTokens`` →
``--max-num-batched-tokens`` with chunked prefill, ``engine.kvCacheTokens`` →
``--num-gpu-blocks-override`` (blocks of 16 tokens), ``placement.dtype`` → ``--dtype``,
``placement.deviceIndices`` → ``CUDA_VISIBLE_DEVICES`` and ``--tensor-parallel-size``. A LoRA
adapter directory is served on top of its base with ``--enable-lora --lora-modules``, under the
service's name.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..standard import InferenceServiceSpec

BLOCK_SIZE = 16


class VLLMError(Exception):
    """vLLM could not be started or did not become healthy."""


def vllm_args(spec: InferenceServiceSpec, model: Path, *, name: str, port: int, key: str) -> list[str]:
    """The ``vllm serve`` command line for a service (without the executable)."""
    engine, place = spec.engine, spec.placement
    adapter = (model / "adapter_config.json").is_file()
    base = _adapter_base(model) if adapter else model
    args = ["serve", str(base), "--host", "127.0.0.1", "--port", str(port), "--api-key", key,
            "--served-model-name", f"{name}-base" if adapter else name,
            "--dtype", place.dtype, "--max-num-seqs", str(engine.max_sequences),
            "--enable-chunked-prefill", "--max-num-batched-tokens", str(engine.prefill_chunk_tokens),
            "--block-size", str(BLOCK_SIZE),
            "--tensor-parallel-size", str(max(1, len(place.device_indices)))]
    if engine.max_model_length is not None:
        args += ["--max-model-len", str(engine.max_model_length)]
    if engine.kv_cache_tokens is not None:
        args += ["--num-gpu-blocks-override", str(math.ceil(engine.kv_cache_tokens / BLOCK_SIZE))]
    if adapter:
        args += ["--enable-lora", "--lora-modules", f"{name}={model}"]
    return args


def vllm_env(spec: InferenceServiceSpec) -> dict[str, str]:
    env = dict(os.environ)
    if spec.placement.device_indices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.placement.device_indices)
    return env


def _adapter_base(path: Path) -> Path:
    info = json.loads((path / "adapter_config.json").read_text())
    base = Path(info.get("base_model_name_or_path") or "")
    return base if base.is_absolute() else path / base


@dataclass
class Upstream:
    """A running OpenAI-compatible server the gateway relays to."""

    url: str
    key: str
    process: subprocess.Popen[bytes] | None = None
    client: Any = field(default=None, repr=False)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM vLLM's process group (it spawns engine processes), then SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_vllm(spec: InferenceServiceSpec, model: Path, *, name: str, timeout: float = 900.0) -> Upstream:
    """Start ``vllm serve`` on loopback and wait until ``/health`` and ``/v1/models`` answer."""
    import httpx

    from ..domain.accelerators import unavailable

    why = unavailable("vllm", spec.placement.device)
    if why is not None:
        raise VLLMError(why)
    port, key = free_port(), secrets.token_urlsafe(24)
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main",
               *vllm_args(spec, model, name=name, port=port, key=key)]
    # Its own process group, so stopping it stops the engine processes it starts too.
    proc = subprocess.Popen(command, env=vllm_env(spec), start_new_session=True)
    upstream = Upstream(f"http://127.0.0.1:{port}", key, proc)
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise VLLMError(f"vllm exited with status {proc.returncode} while starting (see its log above)")
        try:
            if httpx.get(upstream.url + "/health", timeout=5).status_code == 200 and \
                    httpx.get(upstream.url + "/v1/models", headers=headers, timeout=5).status_code == 200:
                return upstream
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    upstream.stop()
    raise VLLMError(f"vllm did not become healthy within {timeout:.0f} s")
