"""lmspec tokenizers as ``transformers`` tokenizers, for exports in Hugging Face format.

>>> tok = hf_tokenizer({"type": "byte"})       # ids = UTF-8 bytes, as lmspec's byte tokenizer
>>> tok("hé")["input_ids"]
[104, 195, 169]
"""

from __future__ import annotations

from typing import Any


def _bytes_to_unicode() -> dict[int, str]:
    # The printable stand-in for every byte that byte-level BPE uses (GPT-2's table); written out
    # here because `tokenizers` exposes the alphabet only as an unordered list.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def byte_tokenizer_object() -> Any:
    """A ``tokenizers.Tokenizer`` mapping each UTF-8 byte to the id equal to its value: a
    byte-level BPE with the 256 bytes as vocabulary and no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_tokenizer(state: dict[str, Any]) -> Any:
    """The ``PreTrainedTokenizerFast`` of an lmspec tokenizer state (``Tokenizer.state_dict()``)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    kind = state.get("type")
    if kind == "byte":
        return PreTrainedTokenizerFast(tokenizer_object=byte_tokenizer_object())  # type: ignore[no-untyped-call]
    if kind == "file":
        obj = Tokenizer.from_str(str(state["json"]))
        from ..data.tokenizer import EOS_CANDIDATES

        vocab = obj.get_vocab(with_added_tokens=True)
        eos = next((t for t in EOS_CANDIDATES if t in vocab), None)
        return PreTrainedTokenizerFast(tokenizer_object=obj, eos_token=eos)  # type: ignore[no-untyped-call]
    raise ValueError(f"unknown tokenizer type {kind!r}")
