"""Layer 5 across manifests: what a TrainingJob needs from its Model and Dataset together.

A Model's base and a Dataset's files are checked on their own (:mod:`.files`); some refusals need
both: the base's weights name the modules a LoRA adapter can target, and chat data that declares
no tokenizer is rendered with the base's tokenizer and chat template. ``lmspec run`` runs these
checks before it prepares data or loads a model, through ``lmspec validate --check-env``'s code.

>>> list(job_environment(job, manifest_of, index))   # (manifest, rule, path, message, hint) tuples
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..validator import registry as rules
from ..validator.index import Index

EnvIssue = tuple[Any, str, tuple[str | int, ...], str, str]
"""(manifest the finding is about, rule, path in it, message, hint)."""


def base_directory(model: Any, index: Index) -> Path | None:
    """The directory of a Model's pretrained base when it is there to read, else None (its
    absence is the Model's own finding, env.pretrained-base)."""
    from ..domain.pretrained import BaseError, check_directory, locate
    from ..manifests.light import Pretrained

    arch = model.obj.spec.architecture
    if not isinstance(arch, Pretrained):
        return None
    try:
        found = locate(arch, model.base_dir, export_dir_of=index.export_dir)
    except BaseError:
        return None
    if found.directory is None or check_directory(found.directory) is not None:
        return None
    return found.directory


def job_environment(job: Any, manifest_of: Callable[[str, str], Any], index: Index) -> Iterator[EnvIssue]:
    """Findings about a TrainingJob's Model and Dataset taken together."""
    spec = job.obj.spec
    model, data = manifest_of("Model", spec.model), manifest_of("Dataset", spec.dataset)
    if model is None:
        return
    base = base_directory(model, index)
    if base is None:
        return
    if spec.adapter is not None:
        yield from _adapter_modules(job, base)
    if data is not None and data.obj.spec.chat is not None and data.obj.spec.chat.tokenizer is None:
        yield from _base_chat_template(job, data, base)


def _adapter_modules(job: Any, base: Path) -> Iterator[EnvIssue]:
    from ..domain.plan import DEFAULT_LORA_TARGETS
    from ..domain.pretrained import BaseError, count_from_headers, module_names, read_config

    adapter = job.obj.spec.adapter
    try:
        shapes = count_from_headers(base)[2]
        config = read_config(base)
    except (BaseError, OSError, ValueError, KeyError, struct.error):
        return  # an unreadable base is env.pretrained-base's
    targetable, every = module_names(shapes)
    if not any(name.split(".", 1)[0] == "lm_head" or ".lm_head." in name for name in shapes) \
            and config.get("tie_word_embeddings") is not False:
        # A head tied to the embeddings is saved once, under the embeddings' name.
        targetable.add("lm_head")
        every.add("lm_head")
    targets = adapter.target_modules
    field = "targetModules"
    if targets is None:
        targets = DEFAULT_LORA_TARGETS.get(str(config.get("model_type", "")))
        field = "type"
    if isinstance(targets, list):
        absent = [t for t in targets if t not in targetable]
        if absent:
            what = "adapter.targetModules names" if field == "targetModules" else \
                f"the default LoRA targets of model type {config.get('model_type')!r} are"
            yield (job, rules.ENV_ADAPTER_MODULES, ("spec", "adapter", field),
                   f"{what} {', '.join(absent)}, which the pretrained base ({base}) does not have",
                   f"its linear layers are: {', '.join(sorted(targetable)) or 'none'}; or use all-linear")
    absent = [m for m in adapter.modules_to_save if m not in every]
    if absent:
        yield (job, rules.ENV_ADAPTER_MODULES, ("spec", "adapter", "modulesToSave"),
               f"adapter.modulesToSave names {', '.join(absent)}, which the pretrained base ({base}) does not have",
               "name modules of the base, such as lm_head or embed_tokens")


def _base_chat_template(job: Any, data: Any, base: Path) -> Iterator[EnvIssue]:
    """Chat data without a tokenizer of its own is rendered with the base's template: the same
    check as data preparation's (:func:`~lmspec.data.chat_template.check_template`)."""
    from ..data.chat_template import check_template, find_template
    from ..data.errors import DataError

    chat = data.obj.spec.chat
    try:
        check_template(find_template(chat, data.base_dir, base), chat)
    except DataError as e:
        yield (data, rules.ENV_CHAT_TEMPLATE, ("spec", "chat"),
               f"{e.message} (the tokenizer of TrainingJob {job.name!r}'s pretrained base {base})",
               e.hint or "")
