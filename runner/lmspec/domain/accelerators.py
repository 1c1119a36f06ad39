"""What this machine offers an engine, found without importing torch or vLLM (the validator
asks too, and ``import lmspec`` stays light).

>>> cuda_present(), vllm_installed()
(False, False)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def cuda_present() -> bool:
    """An NVIDIA driver is loaded and exposes at least one device."""
    return Path("/proc/driver/nvidia/version").is_file() and any(Path("/dev").glob("nvidia[0-9]*"))


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def unavailable(engine: str, device: str) -> str | None:
    """Why the engine/device pair cannot run here (None when it can), with what to use instead."""
    if engine == "vllm" and not vllm_installed():
        return ("engine 'vllm' needs the vllm package, which is not installed here (pip install "
                "vllm on a CUDA machine), or use engine.name: builtin, which runs on CPU and CUDA")
    if (engine == "vllm" or device == "cuda") and not cuda_present():
        return (f"engine '{engine}' on placement.device '{device}' needs a CUDA device, and this "
                "machine has none; use engine.name: builtin with placement.device: cpu")
    return None
