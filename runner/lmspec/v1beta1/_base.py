"""Building blocks shared by every v1beta1 kind.

Every object in a manifest is a :class:`Spec`: strict (no type coercion, so ``"5"`` is not an
integer and ``yes`` is not a boolean), closed (unknown keys are errors) except for keys starting
with ``x-``, which are the sanctioned extension point and are kept verbatim on round trips.
"""


from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ._plain import EXTENSION_KEY, _integral_float_to_int

EXTENSION_PREFIX = "x-"


Int = Annotated[int, BeforeValidator(_integral_float_to_int), Field(ge=-(2**63), le=2**63 - 1)]
"""An integer that also accepts integral floats such as ``5e8``, as JSON Schema does; within
64 bits, so no size or count overflows what reads it later."""

PositiveInt = Annotated[Int, Field(ge=1)]
NonNegativeInt = Annotated[Int, Field(ge=0)]

CountOrAll = Annotated[Annotated[int, Field(ge=1, le=2**63 - 1)] | Literal["all"],
                       BeforeValidator(_integral_float_to_int)]
"""A positive count, or ``"all"``. The float conversion wraps the union rather than the integer
branch, so that pydantic names the branches plainly (``constrained-int``, ``literal['all']``)."""

def _closed_but_extensions(schema: dict[str, Any]) -> None:
    # What the published schema says of every object: x- keys allowed, nothing else undeclared.
    schema["additionalProperties"] = False
    schema["patternProperties"] = {"^x-": {}}


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
"""A DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric."""


class Spec(BaseModel):
    """Base of every manifest object: strict, closed, camelCase keys, ``x-`` extensions."""

    model_config = ConfigDict(
        # Closed but for x- keys: the keys of the extra mapping must match EXTENSION_KEY, so
        # pydantic-core itself refuses any other key (as a pattern mismatch on the key, which the
        # validator reports as an unknown key). A Python validator per object did the same at a
        # tenth of the validator's whole time over a directory of manifests.
        extra="allow",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        # Descriptions come from attribute docstrings, attached only when schemas or docs are
        # generated (lmspec.field_docs.attach_field_docs); schemas are built on first use, so validating a
        # Model does not pay for building the TrainingJob schema.
        defer_build=True,
        validate_default=False,
        # YAML reads .inf and .nan as floats; no setting means either, and JSON cannot carry them.
        allow_inf_nan=False,
        json_schema_extra=_closed_but_extensions,
    )

    __pydantic_extra__: dict[Annotated[str, Field(pattern=EXTENSION_KEY)], Any] = Field(init=False)

    @property
    def extensions(self) -> dict[str, Any]:
        """The ``x-`` keys of this object, as written."""
        return dict(self.__pydantic_extra__ or {})
