"""Tokenizers: the built-in byte-level one, or a local ``tokenizer.json`` (``tokenizers`` package).

>>> tok = Tokenizer.byte()
>>> tok.encode("hé")
[104, 195, 169]
>>> tok.decode([104, 195, 169])
'hé'
>>> Tokenizer.from_state_dict(tok.state_dict()).vocab_size
256
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

# Special tokens that mark the end of a document, in the order they are looked for.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|end_of_text|>")


class Tokenizer:
    """Text ↔ token ids. ``eos_id`` separates documents when packing; the byte tokenizer has none."""

    def __init__(self, kind: str, *, json_text: str | None = None, sha256: str | None = None) -> None:
        self.kind = kind
        self.sha256 = sha256
        self._json = json_text
        self._hf: Any = None
        self.eos_id: int | None = None
        if kind == "byte":
            self.vocab_size = 256
        elif kind == "file":
            from tokenizers import Tokenizer as HFTokenizer  # lazy: optional dependency

            self._hf = HFTokenizer.from_str(json_text or "")
            self.vocab_size = int(self._hf.get_vocab_size(with_added_tokens=True))
            vocab = self._hf.get_vocab(with_added_tokens=True)
            self.eos_id = next((int(vocab[t]) for t in EOS_CANDIDATES if t in vocab), None)
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r} (known: byte, file)")

    @classmethod
    def byte(cls) -> Tokenizer:
        """The byte-level tokenizer: each UTF-8 byte is one token id (0-255)."""
        return cls("byte")

    @classmethod
    def from_file(cls, path: Path) -> Tokenizer:
        """Load a Hugging Face ``tokenizer.json``; the JSON is kept, so the state is self-contained."""
        data = path.read_bytes()
        return cls("file", json_text=data.decode("utf-8"), sha256=hashlib.sha256(data).hexdigest())

    def encode(self, text: str) -> list[int]:
        if self._hf is None:
            return list(text.encode("utf-8"))
        return list(self._hf.encode(text, add_special_tokens=False).ids)

    def encode_array(self, text: str) -> np.ndarray:
        """``encode`` as an int64 array; fast for the byte tokenizer."""
        if self._hf is None:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return np.asarray(self._hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        if self._hf is None:
            return [self.encode_array(t) for t in texts]
        encodings = self._hf.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def decode(self, ids: list[int]) -> str:
        if self._hf is None:
            bad = [i for i in ids if not 0 <= int(i) <= 255]
            if bad:
                raise ValueError(f"byte tokenizer ids are 0-255, got {bad[0]}")
            # Ids a model samples need not form valid UTF-8; replace rather than fail.
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return str(self._hf.decode([int(i) for i in ids], skip_special_tokens=False))

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable; a file tokenizer carries its whole ``tokenizer.json``."""
        if self.kind == "byte":
            return {"type": "byte"}
        return {"type": "file", "json": self._json, "sha256": self.sha256}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> Tokenizer:
        kind = d.get("type")
        if kind == "byte":
            return cls.byte()
        if kind == "file":
            return cls("file", json_text=str(d["json"]), sha256=d.get("sha256"))
        raise ValueError(f"unknown tokenizer type {kind!r} in state (known: byte, file)")

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind!r}, vocab_size={self.vocab_size})"
