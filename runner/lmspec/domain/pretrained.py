"""Find a pretrained base and read its size from its files, without torch or transformers.

>>> found = locate(arch, base_dir, export_dir_of=lambda job: Path("runs") / job / "export")
>>> found.directory, found.problem          # a directory, or None and why not
>>> check_directory(found.directory)        # None, or (problem, hint)
>>> count_from_headers(found.directory)     # parameters from the safetensors headers

A base is a local directory, an ``hf://org/name@revision`` reference read from the Hugging Face
cache, or the export of another TrainingJob. The validator and ``lmspec plan`` read bases
through this module; resolving and digesting one for a run is :mod:`lmspec.model.pretrained`.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..standard import Pretrained


URI = re.compile(r"^hf://(?P<repo>[^@]+?)(?:@(?P<rev>[^@/\s]+))?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
CONFIG = "config.json"
# Keys of config.json that give the context length, by architecture family.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class BaseError(Exception):
    """A pretrained base that cannot be found, read or trusted (printed without a traceback)."""


@dataclass(frozen=True)
class Found:
    """Where a base is, or why it cannot be found."""

    directory: Path | None
    problem: str = ""
    hint: str = ""
    repo_id: str | None = None
    revision: str | None = None


def parse_uri(uri: str) -> tuple[str, str | None]:
    """``hf://org/name@rev`` → ``("org/name", "rev")``; the revision is None when omitted."""
    m = URI.match(uri)
    if m is None:
        raise BaseError(f"{uri!r} is not an hf://org/name@revision reference")
    return m.group("repo"), m.group("rev")


def hub_cache() -> Path:
    """The Hugging Face hub cache, found as ``huggingface_hub`` finds it (read without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot of a model repository at a revision (a branch or tag through
    ``refs/``, or a commit hash), following the cache layout of ``huggingface_hub``."""
    repo = hub_cache() / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    commit = rev if COMMIT.match(rev) else None
    if commit is None:
        ref = repo / "refs" / rev
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    snap = repo / "snapshots" / commit
    return snap if snap.is_dir() else None


def locate(arch: Pretrained, base_dir: Path, *, export_dir_of: Callable[[str], Path | None]) -> Found:
    """Find the base's directory without reading its files. ``export_dir_of`` maps a
    TrainingJob name to its export directory (None when that job is not among the inputs)."""
    if arch.path is not None:
        path = Path(arch.path).expanduser()
        return Found(path if path.is_absolute() else base_dir / path)
    if arch.uri is not None:
        repo_id, rev = parse_uri(arch.uri)
        snap = cached_snapshot(repo_id, rev)
        if snap is None:
            where = hub_cache() / ("models--" + repo_id.replace("/", "--"))
            return Found(None, f"{arch.uri} is not in the Hugging Face cache ({where})",
                         f"download it first (huggingface-cli download {repo_id}"
                         + (f" --revision {rev}" if rev else "") + "), or set HF_HUB_CACHE to the cache "
                         "that holds it", repo_id, rev)
        return Found(snap, repo_id=repo_id, revision=rev)
    if arch.training_job is not None:
        export = export_dir_of(arch.training_job)
        if export is None:
            return Found(None, f"TrainingJob {arch.training_job!r} is not among the inputs",
                         "pass the file that defines it too")
        return Found(export)
    return Found(None, "a pretrained architecture needs one of path, uri and trainingJob")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the shards its index names, else every
    ``*.safetensors`` file."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / n for n in names]
    return sorted(directory.glob("*.safetensors"))


def check_directory(directory: Path) -> tuple[str, str] | None:
    """(problem, hint) when a directory is not a loadable Hugging Face checkpoint, else None."""
    if not directory.is_dir():
        return f"directory {directory} does not exist", "point path at a Hugging Face model directory"
    if not (directory / CONFIG).is_file():
        return f"{directory} has no config.json", "a Hugging Face model directory holds config.json"
    try:
        files = weight_files(directory)
    except (OSError, ValueError, KeyError) as e:
        return f"{directory}/model.safetensors.index.json is unreadable: {e}", ""
    if not files:
        return (f"{directory} has no *.safetensors weights",
                "save the model with save_pretrained(..., safe_serialization=True)")
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        return f"{directory} lacks weight shards named by its index: {', '.join(absent[:3])}", ""
    return None


def read_config(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / CONFIG).read_text())
    if not isinstance(data, dict):
        raise BaseError(f"{directory / CONFIG} is not a JSON object")
    return data


def context_length(config: dict[str, Any]) -> int | None:
    """The longest sequence a checkpoint's config allows, when it says."""
    for scope in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = scope.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor name → dtype, shape and offsets."""
    # The format is 8 bytes of little-endian header length, then the header; reading it here
    # avoids importing torch (or even the safetensors package) in the validator.
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > 100_000_000:
            raise BaseError(f"{path} has an implausible safetensors header of {n} bytes")
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return dict(header)


_BLOCK = re.compile(r"^(.*?\.\d+)\.")


def count_from_headers(directory: Path) -> tuple[int, int, dict[str, list[int]]]:
    """(parameters, largest layer, shape of every tensor) of a checkpoint, from its headers.

    A layer is a numbered block (``model.layers.3``) or a lone tensor (the embeddings); tied
    weights are stored once by ``save_pretrained`` and so counted once."""
    shapes: dict[str, list[int]] = {}
    for f in weight_files(directory):
        for name, meta in safetensors_header(f).items():
            shapes[name] = [int(d) for d in meta["shape"]]
    groups: dict[str, int] = {}
    total = 0
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        total += n
        m = _BLOCK.match(name)
        key = m.group(1) if m else name
        groups[key] = groups.get(key, 0) + n
    return total, max(groups.values(), default=0), shapes


def module_names(shapes: dict[str, list[int]]) -> tuple[set[str], set[str]]:
    """(modules LoRA can target, every module) of a model, by the last component of their
    names, from its parameters' names and shapes (a checkpoint's headers, or a loaded model's
    parameters): a target is a module with a 2-D ``weight`` (linear, GPT-2's Conv1D, embedding).

    >>> targets, every = module_names({"model.layers.0.self_attn.q_proj.weight": [8, 8],
    ...                                 "model.norm.weight": [8]})
    >>> sorted(targets), sorted(every)
    (['q_proj'], ['0', 'layers', 'model', 'norm', 'q_proj', 'self_attn'])
    """
    targets: set[str] = set()
    every: set[str] = set()
    for name, shape in shapes.items():
        parts = name.split(".")
        every.update(parts[:-1])
        if len(parts) >= 2 and parts[-1] == "weight" and len(shape) == 2:
            targets.add(parts[-2])
    return targets, every
