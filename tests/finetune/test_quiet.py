"""What lmspec keeps out of the output of ``transformers`` and ``peft`` when it loads, runs and
adapts a model: exactly the lines its design makes harmless, nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lmspec.model.adapters import attach_lora
from lmspec.model.build import CausalLM, load_pretrained
from lmspec.standard import Adapter


def _gpt2(pad_token_id: int | None = 0) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        pad_token_id=pad_token_id, bos_token_id=1, eos_token_id=1)
    return GPT2LMHeadModel(config)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_padded_row_without_a_mask_draws_no_advice_and_other_warnings_pass() -> None:
    import transformers.utils.logging  # noqa: F401  (adds Logger.warning_once)

    # transformers says it once per process: forget that it was said.
    logging.Logger.warning_once.cache_clear()  # type: ignore[attr-defined]
    logger = logging.getLogger("transformers.modeling_utils")
    records = _Records()
    logger.addHandler(records)
    try:
        lm = CausalLM(_gpt2())
        logits = lm(torch.tensor([[5, 6, 7, 0, 0]]))  # right padding, as lmspec's batches have it
        logger.warning("a warning about the checkpoint")
    finally:
        logger.removeHandler(records)
    assert logits.shape == (1, 5, 64)
    assert records.messages == ["a warning about the checkpoint"]


def test_lora_on_gpt2_conv1d_layers_warns_nothing(recwarn: pytest.WarningsRecorder) -> None:
    """lmspec's transformer architecture is GPT-2: peft sets fan_in_fan_out for its Conv1D
    layers itself (the suite turns any warning that escapes into an error)."""
    model = attach_lora(_gpt2(pad_token_id=None), Adapter.model_validate({"type": "lora", "rank": 2}))
    assert [w.message for w in recwarn] == []
    layers = [m for name, m in model.named_modules() if name.endswith("c_attn") and hasattr(m, "fan_in_fan_out")]
    assert layers and all(m.fan_in_fan_out for m in layers)


def test_loading_a_checkpoint_shows_no_progress_bar_and_restores_them(tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    _gpt2().save_pretrained(tmp_path / "lm")
    assert hf_logging.is_progress_bar_enabled()
    if int(transformers.__version__.split(".")[0]) >= 5:
        # What the bar looks like without lmspec (transformers 5 shows it for every checkpoint).
        AutoModelForCausalLM.from_pretrained(tmp_path / "lm", local_files_only=True)
        assert "Loading weights" in capfd.readouterr().err
    loaded = load_pretrained(tmp_path / "lm")
    assert "Loading weights" not in capfd.readouterr().err
    assert isinstance(loaded, CausalLM)
    # Downloads (hf:// bases) still show theirs.
    assert hf_logging.is_progress_bar_enabled()
