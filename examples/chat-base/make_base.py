"""The tokenizer of the chat examples, and small Hugging Face-format base models for tests.

    python examples/chat-base/make_base.py               # writes examples/chat-base/tokenizer/
    python examples/chat-base/make_base.py --model DIR   # + a randomly initialised tiny Llama in DIR

The tokenizer is a byte-level BPE trained with ``tokenizers`` on the licence texts in
``examples/data/licenses``, with a chat template whose assistant turns (and their end-of-turn
token) are marked with ``{% generation %}`` so that assistant-only losses can find them. The
``chat-base-pretrain`` TrainingJob trains a tiny Llama-architecture model with it and exports a
Hugging Face model directory that the chat examples start from.

``make_base`` writes a whole tiny base (tokenizer, config, generation config, weights in several
safetensors shards with an index, as large checkpoints are); tests and benchmarks build their
fixtures with it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LICENSES = HERE.parent / "data" / "licenses"

EOS = "<|endoftext|>"
SPECIAL = ["<|pad|>", "<|bos|>", EOS, "<|system|>", "<|user|>", "<|assistant|>"]

# Each turn is "<|role|>\n content <|endoftext|>\n"; the assistant's content and its end-of-turn
# token are inside {% generation %} so that they, and only they, are trained by default.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|endoftext|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|endoftext|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def licence_lines() -> list[str]:
    return [line for p in sorted(LICENSES.glob("*.txt")) for line in p.read_text().splitlines() if line.strip()]


def make_tokenizer(out: Path, *, lines: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """Train the BPE tokenizer and save it with its chat template; returns the ``transformers``
    tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(lines) if lines is not None else licence_lines(), trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token=EOS, pad_token="<|pad|>")
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(str(out))
    return hf_tok


def make_base(out: Path, *, lines: Iterable[str] | None = None, vocab_size: int = 512, hidden_size: int = 64,
              intermediate_size: int = 128, layers: int = 2, heads: int = 2, kv_heads: int = 1,
              context: int = 256, seed: int = 0, max_shard_size: str = "100KB") -> Path:
    """Write tokenizer, chat template, config, generation config and sharded weights to ``out``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out)
    hf_tok = make_tokenizer(out, lines=lines, vocab_size=vocab_size)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=context, tie_word_embeddings=False,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                                               pad_token_id=hf_tok.pad_token_id, max_new_tokens=64)
    model.save_pretrained(str(out), max_shard_size=max_shard_size, safe_serialization=True)
    return out


if __name__ == "__main__":
    make_tokenizer(HERE / "tokenizer")
    print(f"wrote {HERE / 'tokenizer'}")
    if sys.argv[1:2] == ["--model"] and len(sys.argv) == 3:
        print(f"wrote {make_base(Path(sys.argv[2]))}")
