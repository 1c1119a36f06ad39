"""Find a Dataset's chat template and refuse one that cannot give the declared loss mask.

>>> template = find_template(chat, base_dir, tokenizer_dir)   # the manifest's, else the tokenizer's
>>> check_template(template, chat)                           # DataError when it lacks markers

Plain file reading only (no transformers), so the environment checks use it too. What a
template must mark is :mod:`lmspec.domain.chat_template`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.chat_template import has_generation_markers, needs_generation_markers
from .errors import DataError

if TYPE_CHECKING:
    from ..standard import Chat

TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"


@dataclass(frozen=True)
class Template:
    """A chat template and where it came from (for messages and lock files)."""

    text: str
    origin: str
    """A file path, or ``spec.chat.template`` for an inline one."""
    field: str
    """The manifest field that selects it."""


def resolve(path: str, base_dir: Path) -> Path:
    return Path(path) if os.path.isabs(path) else base_dir / path


def find_template(chat: Chat, base_dir: Path, tokenizer_dir: Path | None) -> Template | None:
    """The template the data is rendered with: the manifest's own, else the tokenizer's
    (``chat_template.jinja`` wins over ``chat_template`` in ``tokenizer_config.json``, as in
    transformers); None when there is none."""
    if chat.template is not None:
        return Template(chat.template, "spec.chat.template", "spec.chat.template")
    if chat.template_path is not None:
        path = resolve(chat.template_path, base_dir)
        return Template(_read(path, "spec.chat.templatePath"), str(path), "spec.chat.templatePath")
    if tokenizer_dir is None:
        return None
    jinja = tokenizer_dir / TEMPLATE_FILE
    if jinja.is_file():
        return Template(_read(jinja, "spec.chat.tokenizer"), str(jinja), "spec.chat.tokenizer")
    config = tokenizer_dir / CONFIG_FILE
    if not config.is_file():
        return None
    try:
        value = json.loads(_read(config, "spec.chat.tokenizer")).get("chat_template")
    except (json.JSONDecodeError, AttributeError):
        raise DataError("not a JSON object", file=str(config), field="spec.chat.tokenizer") from None
    if isinstance(value, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if not isinstance(value, str):
        return None
    return Template(value, str(config), "spec.chat.tokenizer")


def _read(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist", field=field) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}", field=field) from None


def check_template(template: Template | None, chat: Chat) -> None:
    """Refuse a template that cannot give the declared loss mask (never a silent all-zero mask)."""
    if chat.format == "text":
        return
    if template is None:
        raise DataError("no chat template: the tokenizer has none and the manifest declares none",
                        field="spec.chat",
                        hint="set chat.template or chat.templatePath, or use a tokenizer with a chat template")
    if needs_generation_markers(chat) and not has_generation_markers(template.text):
        raise DataError(
            f"the chat template ({template.origin}) has no {{% generation %}} markers, so the "
            "assistant's tokens cannot be found for the assistant-only loss",
            field=template.field,
            hint="enclose each assistant message and its end-of-turn token in "
                 "{% generation %}…{% endgeneration %}, or set chat.loss.trainOnPrompt: true")
