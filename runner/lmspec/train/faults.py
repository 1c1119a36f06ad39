"""The one fault-injection seam of a training run: kill a rank at a chosen step.

>>> env = {**os.environ, **kill_after(rank=1, step=6)}   # rank 1 dies just after step 6
>>> subprocess.run(["lmspec", "run", "job.yaml"], env=env)

For the tests of resume and failure handling (``tests/train``, ``tests/finetune``,
``tests/faults``, ``tests/results``): ``LMSPEC_FAULT_AT=RANK:STEP`` makes rank RANK kill itself
with SIGKILL just after optimizer step STEP (after that step's checkpoint, if one is due), as a
crashed machine or the kernel's OOM killer would: no cleanup, no final checkpoint, no export.
The recipe reads the variable once, when it is created, and calls the function :func:`kill_point`
returns after every optimizer step; nothing else in the runner reads it. Never set in normal use.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

FAULT_ENV = "LMSPEC_FAULT_AT"
"""``RANK:STEP``: the rank to kill, and the optimizer step after which it dies."""


def kill_after(*, rank: int, step: int) -> dict[str, str]:
    """The environment that kills ``rank`` just after optimizer step ``step``."""
    return {FAULT_ENV: f"{rank}:{step}"}


def kill_point() -> Callable[[int, int], None]:
    """What the recipe calls with ``(rank, step)`` after every optimizer step: kills this
    process at the point :data:`FAULT_ENV` names, does nothing when it is not set."""
    value = os.environ.get(FAULT_ENV, "")
    if not value:
        return _never
    at = tuple(int(v) for v in value.split(":"))

    def kill(rank: int, step: int) -> None:
        if at == (rank, step):
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def _never(rank: int, step: int) -> None:
    return None
