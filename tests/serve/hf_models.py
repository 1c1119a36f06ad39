"""Small causal language models in Hugging Face format, made on the spot: a byte-level BPE
tokenizer trained with ``tokenizers`` on this repository's own text, a chat template, and a
randomly initialised llama-style model (nothing is downloaded).

>>> path = llama_dir(tmp_path / "llama", width=64, layers=2)
>>> AutoModelForCausalLM.from_pretrained(path)
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    """Local text to train the tokenizer on: the README and the InferenceService spec."""
    files = [ROOT / "README.md", ROOT / "spec" / "v1alpha1" / "inferenceservice.md"]
    return [line for f in files for line in f.read_text().splitlines() if line.strip()]


def tokenizer(vocab_size: int = 512) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE)


def llama_dir(out: Path, *, width: int = 64, layers: int = 2, heads: int = 4,
              context_length: int = 512, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write config.json, model.safetensors, generation_config.json and tokenizer files."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = tokenizer(vocab_size)
    eos = [tok.convert_tokens_to_ids("</s>"), tok.convert_tokens_to_ids("<|im_end|>")]  # type: ignore[attr-defined]
    config = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=width * 3,  # type: ignore[arg-type]
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=context_length,
                         bos_token_id=tok.bos_token_id, eos_token_id=eos[0],  # type: ignore[attr-defined]
                         pad_token_id=tok.pad_token_id)  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos,
                                               pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)  # type: ignore[attr-defined]
    return out
