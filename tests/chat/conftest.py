"""Makes ``chat_helpers`` importable by the tests here (pytest runs in importlib mode), and the
tokenizer fixtures they share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_helpers import write_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real BPE tokenizer directory with a chat template (:func:`chat_helpers.write_tokenizer`)."""
    return write_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def hf_tok(tok_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))
