"""What lmspec keeps out of the output of ``transformers``, each with the reason it asks nothing
of the user.

>>> with loading_quietly():              # no "Loading weights" bar for a checkpoint on disk
...     lm = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
>>> unmasked_rows_are_intended()          # before forwards that pass no attention_mask

Everything else ``transformers`` says (its errors, warnings about the checkpoint) goes through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def loading_quietly() -> Iterator[None]:
    """No progress bars while a checkpoint is read from disk: it takes a moment, and the bar
    repeats once per process (every rank, every server worker) a line that says nothing.

    The bars are switched back on after, so that a download (``hf://`` bases) still shows one."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


_MASK_ADVICE = "We strongly recommend passing in an `attention_mask` since your input_ids may be padded"


class _NoMaskAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_MASK_ADVICE)


_NO_MASK_ADVICE = _NoMaskAdvice()


def unmasked_rows_are_intended() -> None:
    """Drop the advice of ``transformers`` (GPT-2 models with a pad token) to pass an
    ``attention_mask`` when a row ends in padding.

    lmspec's language-model rows carry no mask by design: padding only ever follows a row's
    tokens, where causal attention keeps it from every real token and the loss leaves it out,
    and packed documents are told apart by position ids that restart. Idempotent."""
    logging.getLogger("transformers.modeling_utils").addFilter(_NO_MASK_ADVICE)
