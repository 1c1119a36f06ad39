"""Pretrained bases for a run: resolve and digest a checkpoint (the lock), load its tokenizer.

>>> base = resolve(arch, base_dir, export_dir_of=lambda job: Path("runs") / job / "export")
>>> base.directory, base.sha256             # + resolved commit and a sha256 per file (the lock)
>>> tok = load_base_tokenizer(base.directory)

Finding a base and reading its size without torch is :mod:`lmspec.domain.pretrained`;
:func:`resolve` uses ``huggingface_hub`` and :func:`load_base_tokenizer` ``transformers``
(the ``run`` extra).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.pretrained import (
    BaseError,
    check_directory,
    hub_cache,
    hub_offline,
    locate,
    parse_uri,
)

if TYPE_CHECKING:
    from ..standard import Pretrained


@dataclass
class ResolvedBase:
    """A located, digested base: what the run's lock records."""

    directory: Path
    source: str
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def lock(self) -> dict[str, Any]:
        return {"source": self.source, "directory": str(self.directory), "repo": self.repo_id,
                "revision": self.revision, "commit": self.commit, "sha256": self.sha256,
                "files": self.files}


def digest_files(directory: Path) -> dict[str, str]:
    """sha256 of every file below a checkpoint directory (hidden ones skipped), by relative path."""
    out: dict[str, str] = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[rel.as_posix()] = h.hexdigest()
    return out


def aggregate(files: dict[str, str]) -> str:
    """One digest for a checkpoint: sha256 of its sorted ``<sha256>  <path>`` lines (the form
    ``sha256sum`` prints, so ``sha256sum`` output can be checked against it)."""
    text = "".join(f"{files[k]}  {k}\n" for k in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def resolve(arch: Pretrained, base_dir: Path, *, export_dir_of: Callable[[str], Path | None]) -> ResolvedBase:
    """Locate, check and digest a base; refuse a digest other than the pinned one."""
    source = arch.path or arch.uri or f"trainingJob:{arch.training_job}"
    found = locate(arch, base_dir, export_dir_of=export_dir_of)
    commit = None
    directory = found.directory
    if arch.uri is not None:
        repo_id, rev = parse_uri(arch.uri)
        directory, commit = _snapshot(repo_id, rev)
    if directory is None:
        raise BaseError(found.problem + (f" ({found.hint})" if found.hint else ""))
    problem = check_directory(directory)
    if problem is not None:
        if arch.training_job is not None:
            raise BaseError(f"the export of TrainingJob {arch.training_job!r} is not a Hugging Face "
                            f"model: {problem[0]} (run that job first; a LoRA job exports a full model "
                            "only with adapter.exportMerged: true)")
        raise BaseError(problem[0] + (f" ({problem[1]})" if problem[1] else ""))
    files = digest_files(directory)
    digest = aggregate(files)
    if arch.sha256 is not None and digest != arch.sha256:
        raise BaseError(f"the pretrained base {source} has sha256 {digest}, the manifest pins "
                        f"{arch.sha256}: its files changed (see base.files in the run's lock.json)")
    return ResolvedBase(directory.resolve(), source, found.repo_id or (parse_uri(arch.uri)[0] if arch.uri else None),
                        found.revision or (parse_uri(arch.uri)[1] if arch.uri else None), commit, files, digest)


def _snapshot(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """Resolve through ``huggingface_hub``'s cache, offline when ``HF_HUB_OFFLINE`` is set (the
    only way tests and air-gapped machines use it)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise BaseError("hf:// references need the huggingface_hub package: pip install 'lmspec[run]'") from None
    offline = hub_offline()
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=str(hub_cache()),
                                 local_files_only=offline,
                                 allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.txt"])
    except LocalEntryNotFoundError:
        where = hub_cache() / ("models--" + repo_id.replace("/", "--"))
        raise BaseError(f"hf://{repo_id}@{revision or 'main'} is not in the Hugging Face cache ({where}) "
                        "and HF_HUB_OFFLINE is set") from None
    except Exception as e:  # huggingface_hub raises many kinds (network, auth, missing revision)
        raise BaseError(f"cannot fetch hf://{repo_id}@{revision or 'main'}: {e}") from None
    return Path(path), Path(path).name


def load_base_tokenizer(directory: str | Path) -> Any:
    """The base's tokenizer (a ``transformers`` fast tokenizer, chat template included), for
    data preparation and serving alike. Raises :class:`BaseError` when there is none."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise BaseError(f"the pretrained base {directory} has no tokenizer.json")
    try:
        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as e:  # transformers raises many kinds for a broken directory
        raise BaseError(f"cannot load the tokenizer in {directory}: {e}") from None
    return tok
