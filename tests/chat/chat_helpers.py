"""A real tokenizer directory with a chat template, built with ``tokenizers`` on local text, and
chat records in every supported format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmspec.v1alpha1 import Dataset

TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|eot|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|eot|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)
"""A chat template whose assistant turns, end-of-turn token included, are generation blocks."""

PLAIN_TEMPLATE = TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
"""The same template without generation markers."""

LINES = [
    "What does len() return? The number of items in a container.",
    "How do I open a file? Use open() with a path and a mode.",
    "What is a list? A mutable sequence of items.",
    "Explain dict.get. It returns the value for a key, or a default.",
    "system user assistant You are a helpful assistant. Be brief.",
]


def write_tokenizer(directory: Path, template: str | None = TEMPLATE) -> Path:
    """A byte-level BPE tokenizer directory (tokenizer.json, tokenizer_config.json and, when
    given, chat_template.jinja) saved by transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(LINES * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>", "<|bos|>", "<|eot|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eot|>",
                                 pad_token="<|pad|>")
    if template is not None:
        hf.chat_template = template
    hf.save_pretrained(str(directory))
    return directory


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def qa(i: int) -> tuple[str, str]:
    """A question and answer pair, different for each ``i``."""
    return f"What is item {i} of a list?", f"It is the value at index {i}." + " More." * (i % 3)


def dataset(chat: dict[str, Any], sources: list[dict[str, Any]], **spec: Any) -> Dataset:
    return Dataset.model_validate(
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chat"},
         "spec": {"sources": sources, "chat": chat, **spec}}, by_alias=True)
