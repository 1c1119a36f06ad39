"""Building blocks shared by every v1alpha1 kind.

Every object in a manifest is a :class:`Spec`: strict (no type coercion, so ``"5"`` is not an
integer and ``yes`` is not a boolean), closed (unknown keys are errors) except for keys starting
with ``x-``, which are the sanctioned extension point and are kept verbatim on round trips.
"""


from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

EXTENSION_PREFIX = "x-"
_EXTENSIONS = "__lmspec_extensions__"


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema counts 5e8 and 4.0 as integers; YAML 1.2 reads them as floats. Accept the
    # integral ones so the validator and the published schema agree.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral_float_to_int), Field(ge=-(2**63), le=2**63 - 1)]
"""An integer that also accepts integral floats such as ``5e8``, as JSON Schema does; within
64 bits, so no size or count overflows what reads it later."""

PositiveInt = Annotated[Int, Field(ge=1)]
NonNegativeInt = Annotated[Int, Field(ge=0)]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
"""A DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric."""


class Spec(BaseModel):
    """Base of every manifest object: strict, closed, camelCase keys, ``x-`` extensions."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        # Descriptions come from attribute docstrings, attached only when schemas or docs are
        # generated (_docs.attach_field_docs); schemas are built on first use, so validating a
        # Model does not pay for building the TrainingJob schema.
        defer_build=True,
        validate_default=False,
        # YAML reads .inf and .nan as floats; no setting means either, and JSON cannot carry them.
        allow_inf_nan=False,
        json_schema_extra={"patternProperties": {"^x-": {}}},
    )

    # The x- keys are kept in the instance's __dict__ under this name rather than in a pydantic
    # private attribute: private attributes cost an initialisation on every model instance, which
    # was a sixth of the validator's time over a directory of manifests. Field serialisation
    # reads only declared fields, so the entry never leaks into dumps except as written below.
    @model_validator(mode="wrap")
    @classmethod
    def _split_extensions(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if data.__class__ is dict:
            for key in data:
                if key.__class__ is str and key.startswith(EXTENSION_PREFIX):
                    break
            else:
                return handler(data)
            extensions = {k: v for k, v in data.items() if _is_extension(k)}
            model = handler({k: v for k, v in data.items() if not _is_extension(k)})
            object.__setattr__(model, _EXTENSIONS, extensions)
            return model
        return handler(data)

    @model_serializer(mode="wrap")
    def _keep_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        extensions = self.__dict__.get(_EXTENSIONS)
        if extensions and isinstance(dumped, dict):
            dumped.update(extensions)
        return dumped

    @property
    def extensions(self) -> dict[str, Any]:
        """The ``x-`` keys of this object, as written."""
        return dict(self.__dict__.get(_EXTENSIONS, {}))


def _is_extension(key: object) -> bool:
    return isinstance(key, str) and key.startswith(EXTENSION_PREFIX)
