"""The manifest types as the validator builds them: without pydantic, from compiled checks.

Importing pydantic and defining the standard's model classes takes longer than everything else
``lmspec validate`` does for a file or two. So the validator does not use the models directly:
``python -m lmspec.schemagen`` compiles each kind's model into the validation schema that
pydantic-core runs (the same schema pydantic itself builds, in :mod:`.compiled`), and this module
turns it back into a checker with light classes in place of the models. pydantic-core then
raises the same errors, with the same locations, as the models do; the drift check in CI and
``tests/validator/test_light.py`` hold the two to that.

A light object has the attributes of its model (the fields under their Python names, defaults
filled in), ``extensions``, ``model_fields_set`` and, on its class, ``model_fields`` with each
field's ``alias`` and ``default``; the semantic rules need no more. ``isinstance(obj, Light
class)`` is also true of the runtime's pydantic object of the same name, so a helper shared by
the validator and the runtime (parameter counts, the pretrained base's location) takes either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic_core import PydanticKnownError, SchemaValidator

if TYPE_CHECKING:
    # For the type checker, the names below are the models themselves (a light object has their
    # fields); at run time ``from .light import Transformer`` gives the light class (__getattr__).
    # __all__ re-exports them.
    from ..standard import (
        MLP,
        Cluster,
        Dataset,
        Dedupe,
        DropNulls,
        Filter,
        GaussianNoise,
        HuggingFace,
        InferenceService,
        LabelEncode,
        LinearLayer,
        MinMax,
        Model,
        NormLayer,
        Pack,
        Pretrained,
        Sequential,
        Standardize,
        Tokenize,
        TrainingJob,
        Transformer,
    )

HUB_PACKAGE = "lmspec.v1alpha1"
"""The package whose pydantic models the runtime uses; their objects pass ``isinstance`` with
the light class of the same name."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""The default of a field that has none (it is required, or made by a factory); equal to nothing else."""


@dataclass(frozen=True)
class FieldShape:
    """What hints and rules need to know of a model's field."""

    alias: str
    type: Any
    """The field's type, as nested tuples: ``("model", name)``, ``("list", t)``, ``("dict", k, v)``,
    ``("union", (t, ...))``, ``("literal", (value, ...))`` or ``("scalar", name)``."""
    default: Any = None
    example: Any = None
    has_example: bool = False


class _LightType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        if type.__instancecheck__(cls, obj):
            return True
        # The runtime's pydantic model of the same name: the two are one type of the standard.
        t = type(obj)
        return cls is not Light and t.__name__ == cls.__name__ and t.__module__.startswith(HUB_PACKAGE)


class _Fields:
    """``model_fields`` of a light class or object: its model's fields, by Python name."""

    def __get__(self, obj: Any, owner: type) -> Mapping[str, FieldShape]:
        return shapes()[owner.__name__]


class Light(metaclass=_LightType):
    """A schema-valid manifest object, as pydantic-core builds it from the compiled checks."""

    # As pydantic's BaseModel: the fields in __dict__, what pydantic-core adds beside them in slots.
    __slots__ = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")
    model_fields: ClassVar[_Fields] = _Fields()
    __pydantic_extra__: dict[str, Any] | None
    __pydantic_fields_set__: set[str]

    @property
    def extensions(self) -> dict[str, Any]:
        """The ``x-`` keys of this object, as written."""
        return dict(self.__pydantic_extra__ or {})

    @property
    def model_fields_set(self) -> set[str]:
        """The fields the manifest sets (others hold their defaults)."""
        return self.__pydantic_fields_set__

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


_CLASSES: dict[str, type[Light]] = {}


def model_class(name: str) -> type[Light]:
    """The light class standing for the model class ``name`` (one per name)."""
    cls = _CLASSES.get(name)
    if cls is None:
        made: Any = _LightType(name, (Light,), {"__module__": __name__, "__slots__": ()})
        cls = _CLASSES[name] = made
    return cls


def instance(name: str, fields: dict[str, Any], fields_set: set[str], extra: dict[str, Any]) -> Light:
    """A light object as pydantic-core makes one: attributes, extensions and the fields set."""
    obj = object.__new__(model_class(name))
    object.__setattr__(obj, "__dict__", fields)
    object.__setattr__(obj, "__pydantic_extra__", extra)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


# The constraints pydantic applies after a validator of its own (here: on the integers that also
# accept integral floats). pydantic's versions live in a private module that imports pydantic;
# these raise the same errors, under the same names.
def greater_than_or_equal_validator(x: Any, ge: Any) -> Any:
    try:
        if not (x >= ge):
            raise PydanticKnownError("greater_than_equal", {"ge": _safe_repr(ge)})
        return x
    except TypeError:
        raise TypeError(f"Unable to apply constraint 'ge' to supplied value {x}") from None


def less_than_or_equal_validator(x: Any, le: Any) -> Any:
    try:
        if not (x <= le):
            raise PydanticKnownError("less_than_equal", {"le": _safe_repr(le)})
        return x
    except TypeError:
        raise TypeError(f"Unable to apply constraint 'le' to supplied value {x}") from None


def _safe_repr(v: Any) -> int | float | str:
    return v if isinstance(v, (int, float, str)) else repr(v)


def ge(bound: Any) -> Callable[[Any], Any]:
    return functools.partial(greater_than_or_equal_validator, ge=bound)


def le(bound: Any) -> Callable[[Any], Any]:
    return functools.partial(less_than_or_equal_validator, le=bound)


def models_digest() -> str:
    """A digest of the models' source: the compiled checks name the one they were made from."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parents[1].joinpath(HUB_PACKAGE.rsplit(".", 1)[1]).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def usable() -> bool:
    """Whether the compiled checks are the models': made from these models' source, for the
    pydantic-core installed (its schema format and error texts change between releases).
    When not, the validator uses the models themselves: slower to start, never different."""
    from pydantic_core import __version__

    from . import compiled

    return __version__ == compiled.PYDANTIC_CORE and models_digest() == compiled.MODELS


@functools.cache
def checker(version: str, kind: str) -> Any:
    """pydantic-core's validator for one kind of one ``apiVersion``, built on first use."""
    if not usable():
        from ..standard import VERSIONS

        return VERSIONS[version][kind].__pydantic_validator__
    from .compiled import SCHEMAS

    return SchemaValidator(SCHEMAS[version][kind]())


@functools.cache
def shapes() -> Mapping[str, Mapping[str, FieldShape]]:
    """Every model's fields by model name (and their light classes' ``model_fields``)."""
    if usable():
        from .compiled import SHAPES
    else:
        from ..checksgen import shapes as SHAPES

    return {name: {n: FieldShape(*f) for n, f in fields.items()} for name, fields in SHAPES().items()}


def versions() -> Mapping[str, Mapping[str, str]]:
    """Every ``apiVersion`` the validator reads, with the model class name of each kind's documents."""
    if usable():
        from .compiled import ROOTS

        return ROOTS
    from ..standard import VERSIONS

    return {v: {k: cls.__name__ for k, cls in kinds.items()} for v, kinds in VERSIONS.items()}


def __getattr__(name: str) -> type[Light]:
    # ``from .light import Transformer``: the light class of that model, fields and all.
    if name[:1].isupper():
        return model_class(name)
    raise AttributeError(name)


__all__ = [
    "MLP", "Cluster", "Dataset", "Dedupe", "DropNulls", "FieldShape", "Filter", "GaussianNoise", "HuggingFace",
    "InferenceService", "LabelEncode", "Light", "LinearLayer", "MinMax", "Model", "NormLayer", "Pack", "Pretrained",
    "Sequential", "Standardize", "Tokenize", "TrainingJob", "Transformer", "checker", "model_class", "shapes",
    "usable", "versions",
]
