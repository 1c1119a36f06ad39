"""The parts of the v1alpha1 models that need no pydantic: the pattern of extension keys and the
validators of scalars. The models use them, and so does the validator's compiled copy of the
models (:mod:`lmspec.manifests.compiled`), which must run without importing pydantic."""

from typing import Any

from pydantic_core import PydanticKnownError

EXTENSION_KEY = r"^x-"
"""Pattern of the extension keys; every other key must be a declared field."""


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
