"""The parts of the v1beta1 models that need no pydantic: the pattern of extension keys, the
validators of scalars and the reading of durations."""

import functools
from decimal import Decimal
from typing import Any

from pydantic_core import PydanticKnownError

EXTENSION_KEY = r"^x-"
"""Pattern of the extension keys; every other key must be a declared field."""

DURATION = r"^[0-9]+(\.[0-9]+)?(h|m|s|ms|us)$"
"""A duration: a decimal number and one unit, ``h``, ``m``, ``s``, ``ms`` or ``us`` (``30s``,
``1.5s``, ``2ms``, ``500us``)."""

UNIT_SECONDS = {"h": Decimal(3600), "m": Decimal(60), "s": Decimal(1), "ms": Decimal("0.001"),
                "us": Decimal("0.000001")}
"""Seconds in one of each duration unit."""


def duration_seconds(text: str) -> Decimal:
    """``duration_seconds("2ms")`` → ``Decimal("0.002")``: the exact number of seconds."""
    unit = next(u for u in ("ms", "us", "h", "m", "s") if text.endswith(u))
    return Decimal(text[: -len(unit)]) * UNIT_SECONDS[unit]


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema counts 5e8 and 4.0 as integers; YAML 1.2 reads them as floats. Accept the
    # integral ones so the validator and the published schema agree.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_bool(value: Any) -> Any:
    # pydantic matches True against Literal[1]; JSON Schema's enum does not. Reject booleans so the
    # validator and the published schema agree (``stage: true`` is a mistake, not stage 1).
    if isinstance(value, bool):
        raise PydanticKnownError("literal_error", {"expected": "0, 1, 2 or 3"})
    return value


def duration_within(low: Decimal, high: Decimal, *, low_open: bool = False, whole_us: bool = False) -> Any:
    """A validator of duration strings: ``duration_within(Decimal(0), Decimal(3600), low_open=True)``
    accepts ``"10s"`` and refuses ``"0s"`` and ``"2h"``; ``whole_us`` refuses fractions of a
    microsecond. A partial of :func:`check_duration` (with the bounds as text), which the
    validator's compiled checks can name."""
    return functools.partial(check_duration, low=str(low), high=str(high), low_open=low_open, whole_us=whole_us)


def check_duration(value: str, *, low: str, high: str, low_open: bool = False, whole_us: bool = False) -> str:
    """``value`` when its duration is within ``low`` and ``high`` seconds (``low`` excluded with
    ``low_open``; whole microseconds with ``whole_us``), else pydantic's bound error naming the
    bound as a duration (``greater_than`` with ``gt: 0s``)."""
    seconds = duration_seconds(value)
    if (seconds <= Decimal(low) if low_open else seconds < Decimal(low)):
        raise PydanticKnownError("greater_than" if low_open else "greater_than_equal",
                                 {"gt" if low_open else "ge": f"{low}s"})
    if seconds > Decimal(high):
        raise PydanticKnownError("less_than_equal", {"le": f"{high}s"})
    if whole_us and seconds % UNIT_SECONDS["us"]:
        raise PydanticKnownError("multiple_of", {"multiple_of": "1us"})
    return value
