"""What a chat template must mark, read from its text (no transformers).

>>> has_generation_markers("{% generation %}{{ m.content }}{% endgeneration %}")
True
>>> has_generation_markers("{{ m.content }}")
False
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..standard import Chat

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
_END_GENERATION = re.compile(r"\{%-?\s*endgeneration\s*-?%\}")


def has_generation_markers(template: str) -> bool:
    """True when the template encloses something in ``{% generation %}…{% endgeneration %}``:
    transformers then reports which tokens the assistant produced."""
    return bool(_GENERATION.search(template)) and bool(_END_GENERATION.search(template))


def needs_generation_markers(chat: Chat) -> bool:
    """Whether the declared loss needs the template to mark the assistant's tokens."""
    # Preference answers are told apart from the prompt by rendering, not by markers.
    return chat.format not in ("text", "preference") and not chat.loss.train_on_prompt \
        and "assistant" in chat.loss.roles
