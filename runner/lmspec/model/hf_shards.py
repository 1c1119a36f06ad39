"""Write a Hugging Face safetensors checkpoint one tensor at a time.

>>> writer = ShardWriter(out_dir, max_shard_bytes=5 * 10**9)
>>> for name, tensor in weights():      # e.g. gathered one by one from ZeRO-3 partitions
...     writer.add(name, tensor)
>>> writer.close().shards
3

The layout is the one ``save_pretrained`` and ``huggingface_hub.save_torch_state_dict`` write and
``from_pretrained`` and vLLM read: a single ``model.safetensors`` when the weights fit one shard,
else ``model-00001-of-0000N.safetensors`` … with ``model.safetensors.index.json``
(``metadata.total_size``, ``metadata.total_parameters``, ``weight_map``). Tensors go into shards in
the order they are added; a shard is written as soon as the next tensor would take it past
``max_shard_bytes`` (a tensor larger than that gets a shard of its own), as
``split_torch_state_dict_into_shards`` splits a whole state dict, so the writer never holds more
than one shard plus the tensor being added.

Hand-written because ``save_torch_state_dict``, ``split_torch_state_dict_into_shards`` and
``save_pretrained`` all take the whole state dict at once, which is what a ZeRO-3 export of a
model larger than one rank's memory must avoid; file names and the index follow
``huggingface_hub``'s constants and format, and each shard is written by
``safetensors.torch.save_file``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MAX_SHARD_BYTES_ENV = "LMSPEC_EXPORT_MAX_SHARD_BYTES"
"""Environment variable: the largest shard of an exported language model, in bytes."""

DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
"""``huggingface_hub``'s default shard size (5 GB)."""


class ShardError(Exception):
    """A shard size that is not a positive number of bytes."""


def max_shard_bytes() -> int:
    """The shard size: ``$LMSPEC_EXPORT_MAX_SHARD_BYTES`` when set, else 5 GB."""
    raw = os.environ.get(MAX_SHARD_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SHARD_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ShardError(f"environment variable {MAX_SHARD_BYTES_ENV}={raw!r}: expected a positive "
                         "whole number of bytes")
    return value


@dataclass(frozen=True)
class ShardStats:
    """What a :class:`ShardWriter` wrote and the most weight bytes it held at once."""

    shards: int
    total_bytes: int
    parameters: int
    peak_held_bytes: int
    dtype: str | None = None
    """The floating-point type of the weights written (``float32``, ``bfloat16``), when they
    share one: what the model's ``config.json`` must say they are."""


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class ShardWriter:
    """Streams tensors into safetensors shards in ``directory`` (see the module docstring).

    ``convert`` maps each shard's tensors just before they are written (e.g. transformers'
    ``revert_weight_conversion``, which renames weights back to the checkpoint's layout)."""

    def __init__(self, directory: Path, max_shard_bytes: int, *,
                 convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
        self.directory = Path(directory)
        self.max_shard_bytes = max_shard_bytes
        self.convert = convert
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._written: list[tuple[Path, list[str]]] = []  # temporary shard file, tensor names
        self._total_bytes = 0
        self._parameters = 0
        self._peak = 0
        self._dtypes: set[str] = set()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Take ``tensor`` (whole, on the CPU); it is written with the shard it falls in."""
        size = _nbytes(tensor)
        if tensor.is_floating_point():
            self._dtypes.add(str(tensor.dtype).removeprefix("torch."))
        # Counted before any write: the new tensor is already in memory beside the pending shard.
        self._peak = max(self._peak, self._pending_bytes + size)
        self._total_bytes += size
        self._parameters += tensor.numel()
        # The same split as huggingface_hub's split_torch_state_dict_into_shards: a tensor
        # larger than a shard is a shard of its own (the pending one stays open), else a shard
        # that the tensor would overfill is closed first.
        if size > self.max_shard_bytes:
            self._write({name: tensor.contiguous()})
            return
        if self._pending_bytes + size > self.max_shard_bytes:
            self._write(self._pending)
            self._pending, self._pending_bytes = {}, 0
        self._pending[name] = tensor.contiguous()
        self._pending_bytes += size

    def _write(self, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        shard = self.convert(tensors) if self.convert is not None else tensors
        path = self.directory / f".shard-{len(self._written) + 1:05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        self._written.append((path, list(shard)))

    def close(self) -> ShardStats:
        """Write the last shard, give the shards their final names and write the index."""
        from huggingface_hub.constants import SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE

        if self._pending or not self._written:
            self._write(self._pending)
            self._pending, self._pending_bytes = {}, 0
        count = len(self._written)
        if count == 1:
            os.replace(self._written[0][0], self.directory / SAFETENSORS_SINGLE_FILE)
        else:
            stem, ext = SAFETENSORS_SINGLE_FILE.rsplit(".", 1)
            weight_map: dict[str, str] = {}
            for i, (path, names) in enumerate(self._written, start=1):
                final = f"{stem}-{i:05d}-of-{count:05d}.{ext}"
                os.replace(path, self.directory / final)
                weight_map.update(dict.fromkeys(names, final))
            index = {"metadata": {"total_parameters": self._parameters, "total_size": self._total_bytes},
                     "weight_map": weight_map}
            (self.directory / SAFETENSORS_INDEX_FILE).write_text(
                json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        dtype = next(iter(self._dtypes)) if len(self._dtypes) == 1 else None
        return ShardStats(count, self._total_bytes, self._parameters, self._peak, dtype)
