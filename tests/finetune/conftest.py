"""Fixtures for fine-tuning tests: a small pretrained base in Hugging Face format, made here (a
Llama-style model and a BPE tokenizer trained with ``tokenizers`` on a licence text)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "chat-base"))
sys.path.insert(0, str(ROOT / "tests" / "train"))

LICENCE = ROOT / "examples" / "data" / "licenses" / "GPL-3.txt"


def tiny_base(out: Path, **sizes: int) -> Path:
    from make_base import make_base

    lines = [line for line in LICENCE.read_text().splitlines() if line.strip()]
    args = {"vocab_size": 320, "hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 2,
            "kv_heads": 1, "context": 128, "max_shard_size": "40KB"} | sizes
    return make_base(out, lines=lines, **args)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base") / "base")
