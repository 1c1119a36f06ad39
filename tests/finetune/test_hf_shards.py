"""The streaming shard writer lays weights out exactly as ``huggingface_hub`` does for a whole
state dict (same files, same index), never holds more than a shard plus one tensor, and the
result loads with ``transformers``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmspec.model.hf_shards import MAX_SHARD_BYTES_ENV, ShardError, ShardWriter, max_shard_bytes


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sizes = [(10, 10), (300,), (5, 4), (40, 30), (7,), (20, 20), (3, 3)]  # (40, 30) exceeds a shard
    return {f"w{i}": torch.randn(*s, generator=g) for i, s in enumerate(sizes)}


@pytest.mark.parametrize("max_bytes", [1000, 2000, 10**9])
def test_shards_match_huggingface_hub(tmp_path: Path, max_bytes: int) -> None:
    from huggingface_hub import save_torch_state_dict
    from safetensors.torch import load_file

    state = _state()
    (tmp_path / "hub").mkdir()
    (tmp_path / "ours").mkdir()
    save_torch_state_dict(state, tmp_path / "hub", max_shard_size=max_bytes)
    writer = ShardWriter(tmp_path / "ours", max_bytes)
    for name, t in state.items():
        writer.add(name, t)
    stats = writer.close()

    hub_files = sorted(p.name for p in (tmp_path / "hub").iterdir())
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == hub_files
    for f in hub_files:
        if f.endswith(".json"):
            hub, ours = (json.loads((tmp_path / d / f).read_text()) for d in ("hub", "ours"))
            assert ours["weight_map"] == hub["weight_map"]
            assert ours["metadata"]["total_size"] == hub["metadata"]["total_size"]
        else:
            hub_t, ours_t = (load_file(str(tmp_path / d / f)) for d in ("hub", "ours"))
            assert hub_t.keys() == ours_t.keys()
            for k in hub_t:
                torch.testing.assert_close(ours_t[k], hub_t[k], rtol=0, atol=0)
    total = sum(t.numel() * 4 for t in state.values())
    assert stats.total_bytes == total and stats.parameters == total // 4 and stats.dtype == "float32"
    assert stats.shards == max(1, sum(f.endswith(".safetensors") for f in hub_files))
    largest = max(t.numel() * 4 for t in state.values())
    assert stats.peak_held_bytes <= (max_bytes + largest if max_bytes < total else total)


def test_the_written_type_is_reported(tmp_path: Path) -> None:
    """What config.json records is the type of the weights in the shards (one type, or none)."""
    for types, expected in (([torch.bfloat16] * 2, "bfloat16"), ([torch.float32, torch.bfloat16], None)):
        directory = tmp_path / str(expected)
        directory.mkdir()
        writer = ShardWriter(directory, 10**9)
        for i, dtype in enumerate(types):
            writer.add(f"w{i}", torch.ones(3, dtype=dtype))
        writer.add("positions", torch.arange(3))  # integers say nothing about the weights' type
        assert writer.close().dtype == expected


def test_sharded_checkpoint_loads_with_transformers(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    writer = ShardWriter(tmp_path, 3000)
    for name, p in model.named_parameters():  # tied weights appear once
        writer.add(name, p.detach().clone())
    stats = writer.close()
    config.save_pretrained(tmp_path)
    assert stats.shards > 3
    loaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_shard_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_SHARD_BYTES_ENV, raising=False)
    assert max_shard_bytes() == 5 * 10**9
    monkeypatch.setenv(MAX_SHARD_BYTES_ENV, "4096")
    assert max_shard_bytes() == 4096
    for bad in ("0", "-1", "5GB"):
        monkeypatch.setenv(MAX_SHARD_BYTES_ENV, bad)
        with pytest.raises(ShardError, match=MAX_SHARD_BYTES_ENV):
            max_shard_bytes()


def test_the_recipe_writes_each_weight_before_gathering_the_next(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The ShardWriter's own accounting cannot see a caller that gathers the whole model first:
    here the recipe's streamed export is watched from outside, and every gathered weight must
    reach the writer before the next one is gathered."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmspec.model import hf_shards
    from lmspec.train import gather as weights
    from lmspec.train.export import stream_hf_weights

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1)).eval()
    module = torch.nn.Module()
    module.lm = lm

    events: list[str] = []
    gather, add = weights.gather, hf_shards.ShardWriter.add

    def watched_gather(p: torch.Tensor, *, keep: bool) -> torch.Tensor | None:
        events.append("gather")
        return gather(p, keep=keep)

    def watched_add(self: hf_shards.ShardWriter, name: str, t: torch.Tensor) -> None:
        events.append("add")
        add(self, name, t)

    monkeypatch.setattr(weights, "gather", watched_gather)
    monkeypatch.setattr(hf_shards.ShardWriter, "add", watched_add)
    streamed = stream_hf_weights(module, run_dir=tmp_path, shard_bytes=3000, keep=True)  # type: ignore[arg-type]
    assert streamed is not None
    staging, stats = streamed

    parameters = list(lm.named_parameters())
    assert events == ["gather", "add"] * len(parameters)
    assert stats.shards > 3
    written: dict[str, torch.Tensor] = {}
    for f in staging.glob("*.safetensors"):
        written.update(load_file(str(f)))
    assert written.keys() == dict(parameters).keys()
    for name, p in parameters:
        torch.testing.assert_close(written[name], p.detach(), rtol=0, atol=0)
