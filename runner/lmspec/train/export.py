"""The trained model's export: weights gathered from any ZeRO stage, written by rank 0 to
``<run>/export`` (lmspec's ``export.json`` and weights, and for a language model a Hugging Face
directory: safetensors shards, config, tokenizer, chat template, LoRA adapter).

>>> exporter = Exporter(run_dir, keep=world.is_main, shard_bytes=shard_bytes(), ...)
>>> gathered = exporter.gather(engine.module)        # collective: every rank
>>> stats = exporter.write(engine.module, gathered)  # rank 0

A language model's full weights are streamed: gathered one parameter at a time and written into
Hugging Face safetensors shards as they fill, so no rank ever holds the whole model.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..model.build import CausalLM
from . import gather as weights
from .errors import TrainError

if TYPE_CHECKING:
    from ..model.hf_shards import ShardStats
    from ..model.pretrained import ResolvedBase
    from ..standard import Adapter, Dataset, Model


def shard_bytes() -> int:
    """The export's shard size, read before training so that a bad setting is refused at
    the start, not after the last step."""
    from ..model.hf_shards import ShardError, max_shard_bytes

    try:
        return max_shard_bytes()
    except ShardError as exc:
        raise TrainError(str(exc)) from None


def _checkpoint_layout(lm: Any) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """What ``save_pretrained`` does to the weights before writing them: transformers' reverse
    of the conversions some architectures apply when loading (renamed or fused weights), done
    per shard, as transformers does for offloaded weights. A no-op for most models."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without load-time weight conversions
        return None

    def convert(shard: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = revert_weight_conversion(lm, shard)
        return out

    return convert


def stream_hf_weights(module: CausalLM, *, run_dir: Path, shard_bytes: int, keep: bool,
                      merged: bool = False) -> tuple[Path, ShardStats] | None:
    """Write the language model's weights (``merged``: the base with the LoRA update merged
    in) as Hugging Face safetensors shards, streamed (collective): each weight is gathered on
    every rank in turn and rank 0 (``keep``) appends it to the current shard, writing the shard
    out when it is full; the other ranks keep nothing. Returns, on rank 0, the staging
    directory (in ``run_dir``) holding the shards and what was written."""
    import tempfile

    from ..model.hf_shards import ShardWriter

    wrapped: Any = module.lm
    lm: Any = wrapped.get_base_model() if merged else wrapped
    staging: Path | None = None
    writer: ShardWriter | None = None
    if keep:
        staging = Path(tempfile.mkdtemp(prefix=".export-weights.", dir=run_dir))
        writer = ShardWriter(staging, shard_bytes, convert=_checkpoint_layout(lm))
    prefix = "lm."
    named = weights.merged_weights(module.lm, keep=keep) if merged else (
        (name[len(prefix):] if name.startswith(prefix) else name, t)
        for name, t in weights.full_weights(module, keep=keep))
    try:
        for name, tensor in named:
            if writer is not None and tensor is not None:
                writer.add(name, tensor)
            del tensor
        if writer is None or staging is None:
            return None
        return staging, writer.close()
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def tokenizer_dir(base: ResolvedBase | None, data_obj: Dataset, data_dir: Path) -> Path | None:
    """The Hugging Face tokenizer directory exported with the model: the pretrained base's,
    else the directory of the Dataset's ``tokenizer.json`` when it is a whole tokenizer
    directory (``tokenizer_config.json``, chat template), so special tokens and the chat
    template travel with a model trained from scratch."""
    from ..standard import Tokenize

    if base is not None:
        return base.directory
    for step in data_obj.spec.preprocessing:
        if isinstance(step, Tokenize) and step.tokenizer.type == "file":
            path = Path(step.tokenizer.path)
            directory = (path if path.is_absolute() else data_dir / path).parent
            if (directory / "tokenizer_config.json").is_file() and path.name == "tokenizer.json":
                return directory
    return None


def data_template(data_obj: Dataset, data_dir: Path) -> str | None:
    """The chat template the Dataset declares (``chat.template`` or ``chat.templatePath``),
    else None: the exported tokenizer then keeps its own."""
    from ..data.chat_template import find_template

    chat = data_obj.spec.chat
    if chat is None or chat.format == "text" or (chat.template is None and chat.template_path is None):
        return None
    found = find_template(chat, data_dir, None)
    return found.text if found is not None else None


@dataclass
class Gathered:
    """What :meth:`Exporter.gather` collected on rank 0."""

    state: dict[str, torch.Tensor] | None
    """Weights held whole: a small model's, or a LoRA adapter's."""
    streamed: tuple[Path, ShardStats] | None
    """Weights streamed into Hugging Face shards: their staging directory and statistics."""


@dataclass
class Exporter:
    """Writes a run's export (see the module's docstring)."""

    run_dir: Path
    keep: bool
    """Rank 0: the rank that holds the gathered weights and writes the export."""
    shard_bytes: int
    model_obj: Model
    data_obj: Dataset
    data_dir: Path
    """The Dataset manifest's directory (its paths are relative to it)."""
    job_name: str
    adapter: Adapter | None
    base: ResolvedBase | None
    params: dict[str, int]
    transform: Any
    """The prepared data's transform (feature scaling, the tokenizer)."""
    input_width: int | None

    @property
    def out(self) -> Path:
        return self.run_dir / "export"

    def gather(self, module: torch.nn.Module) -> Gathered:
        """The weights to export, gathered from any ZeRO stage (collective)."""
        state: dict[str, torch.Tensor] | None = None
        streamed: tuple[Path, ShardStats] | None = None
        adapter = self.adapter
        stream = {"run_dir": self.run_dir, "shard_bytes": self.shard_bytes, "keep": self.keep}
        if isinstance(module, CausalLM) and adapter is None:
            # Full weights are streamed into shards: no rank ever holds the whole model.
            streamed = stream_hf_weights(module, **stream)  # type: ignore[arg-type]
        elif isinstance(module, CausalLM):
            assert adapter is not None
            # The adapter only: small.
            state = weights.full_state_dict(module, keep=self.keep, trainable_only=True)
            if adapter.export_merged and adapter.type == "lora":
                # A 4-bit (qlora) base has no fp32 weights to gather: it is merged from the
                # base's files on rank 0 instead.
                streamed = stream_hf_weights(module, merged=True, **stream)  # type: ignore[arg-type]
        else:
            state = weights.full_state_dict(module, keep=self.keep)
        return Gathered(state, streamed)

    def write(self, module: torch.nn.Module, gathered: Gathered) -> dict[str, int] | None:
        """Rank 0: the export, from what :meth:`gather` collected; for streamed weights, what
        was written (``shards``, ``weightBytes``, ``peakHeldBytes``), for ``summary.json``."""
        from ..model.export import save_export

        state, streamed = gathered.state, gathered.streamed
        write_hf = None
        try:
            if isinstance(module, CausalLM):
                write_hf = self._hf_writer(module, state, streamed[0] if streamed else None,
                                           streamed[1].dtype if streamed else None)
            save_export(self.out, self.model_obj, state, self.transform.state_dict(),
                        job=self.job_name, metrics={}, input_width=self.input_width,
                        write_hf=write_hf)
        finally:
            if streamed is not None:
                shutil.rmtree(streamed[0], ignore_errors=True)
        if streamed is None:
            return None
        stats = streamed[1]
        # The most weight bytes rank 0 held at once while exporting (the pending shard and
        # the parameter just gathered), against the size of all the weights.
        print(f"lmspec: exported {stats.total_bytes} bytes of weights in {stats.shards} "
              f"shard(s), holding at most {stats.peak_held_bytes} bytes at once")
        return {"shards": stats.shards, "weightBytes": stats.total_bytes, "peakHeldBytes": stats.peak_held_bytes}

    def _hf_writer(self, module: CausalLM, state: dict[str, torch.Tensor] | None,
                   weights_dir: Path | None, weights_dtype: str | None = None) -> Any:
        """The function that writes the Hugging Face part of the export: the adapter in
        ``state`` (LoRA), the streamed weight shards in ``weights_dir`` (full fine-tuning, or
        the merged LoRA model) of type ``weights_dtype``, the config and the tokenizer."""
        from ..model.adapters import merge_adapter, save_adapter
        from ..model.hf_tokenizer import hf_tokenizer
        from ..model.pretrained import load_base_tokenizer

        adapter = self.adapter
        base = self.base
        lm_tokenizer = self.transform.tokenizer
        directory = tokenizer_dir(base, self.data_obj, self.data_dir)
        if directory is not None:
            tokenizer = load_base_tokenizer(directory)
        else:
            assert lm_tokenizer is not None  # a causal-lm dataset always has one
            tokenizer = hf_tokenizer(lm_tokenizer.state_dict())
        template = data_template(self.data_obj, self.data_dir)
        if template is not None:
            # The template the training data was rendered with, so servers format chat
            # requests as training did; save_pretrained writes it to chat_template.jinja.
            tokenizer.chat_template = template

        def write(tmp: Path) -> dict[str, Any]:
            info: dict[str, Any] = {"parameters": self.params,
                                    "base": base.lock() if base is not None else None}
            prefix = "lm."
            if adapter is not None:
                assert base is not None  # the validator requires a pretrained base for adapters
                assert state is not None
                named = {k[len(prefix):]: v for k, v in state.items()}
                peft_model: Any = module.lm
                save_adapter(peft_model, named, tmp / "adapter")
                tokenizer.save_pretrained(str(tmp / "adapter"))
                info["adapter"] = {"type": adapter.type, "path": "adapter", "merged": adapter.export_merged}
                if adapter.export_merged and weights_dir is None:
                    merged: Any = merge_adapter(base.directory, tmp / "adapter")
                    merged.save_pretrained(str(tmp))
            if weights_dir is not None:
                for f in weights_dir.iterdir():
                    os.replace(f, tmp / f.name)
                wrapped: Any = module.lm
                lm: Any = wrapped.get_base_model() if adapter is not None else wrapped
                # What save_pretrained writes beside the weights, recorded the same way. The
                # type is the written weights' (fp32 master weights after bf16 or fp16 training),
                # not the engine module's: loading with dtype="auto" must not cast them.
                lm.config.dtype = weights_dtype or str(lm.dtype).split(".")[1]
                lm.config.architectures = [type(lm).__name__]
                lm.config.save_pretrained(str(tmp))
                if lm.can_generate():
                    lm.generation_config.save_pretrained(str(tmp))
            if adapter is None or adapter.export_merged:
                tokenizer.save_pretrained(str(tmp))
            return info

        return write
