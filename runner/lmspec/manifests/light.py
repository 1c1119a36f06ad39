"""The manifest types as the validator builds them: without pydantic, from compiled checks.

Importing pydantic and defining the standard's model classes takes longer than everything else
``lmspec validate`` does for a file or two. So the validator does not use the models directly:
``python -m lmspec.schemagen`` compiles each kind's model into the validation schema that
pydantic-core runs (the same schema pydantic itself builds, in :mod:`.compiled`), and this module
turns it back into a checker with light classes in place of the models, passing the compiled
functions the classes of their apiVersion (each version has classes of its own, by name). pydantic-core then
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

from .. import versions as _versions

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

HUB = _versions.HUB
"""The apiVersion the runtime uses (``from .light import Transformer`` is its light class)."""
HUB_PACKAGE = _versions.get(HUB).package
"""The package whose pydantic models the runtime uses."""


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
        # The pydantic model of the same name and apiVersion: the two are one type of the standard.
        t = type(obj)
        if cls is Light or t.__name__ != cls.__name__:
            return False
        package = _package(getattr(cls, "_api_version", HUB))
        return t.__module__ == package or t.__module__.startswith(package + ".")


@functools.cache
def _package(version: str) -> str:
    """The models package of an apiVersion: ``lmspec.v1alpha1`` for ``lmspec.io/v1alpha1``."""
    found = _versions.find(version)
    return found.package if found is not None else "lmspec." + version.rsplit("/", 1)[-1]


class _Fields:
    """``model_fields`` of a light class or object: its model's fields, by Python name."""

    def __get__(self, obj: Any, owner: type) -> Mapping[str, FieldShape]:
        return shapes(getattr(owner, "_api_version", HUB))[owner.__name__]


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


_CLASSES: dict[tuple[str, str], type[Light]] = {}


def model_class(name: str, version: str = HUB) -> type[Light]:
    """The light class standing for the model class ``name`` of ``version`` (one per version
    and name; ``_api_version`` on the class says which)."""
    cls = _CLASSES.get((version, name))
    if cls is None:
        made: Any = _LightType(name, (Light,), {"__module__": __name__, "__slots__": (), "_api_version": version})
        cls = _CLASSES[version, name] = made
    return cls


def instance(name: str, fields: dict[str, Any], fields_set: set[str], extra: dict[str, Any],
             version: str = HUB) -> Light:
    """A light object as pydantic-core makes one: attributes, extensions and the fields set."""
    obj = object.__new__(model_class(name, version))
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


def models_digest(version: str = HUB) -> str:
    """A digest of one version's models' source: the compiled checks name the one they were made from."""
    import hashlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(_package(version))
    where = spec.submodule_search_locations if spec is not None else None
    digest = hashlib.sha256()
    for path in sorted(Path(next(iter(where))).glob("*.py")) if where else []:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _core_matches() -> bool:
    from pydantic_core import __version__

    from . import compiled

    return bool(__version__ == compiled.PYDANTIC_CORE)


@functools.cache
def _compiled_for(version: str) -> bool:
    from . import compiled

    return version in compiled.MODELS and _core_matches() and compiled.MODELS[version] == models_digest(version)


def usable(version: str | None = None) -> bool:
    """Whether the compiled checks are the models' (of ``version``, or of every version they hold
    when None): made from these models' source, for the pydantic-core installed (its schema format
    and error texts change between releases). When not, the validator uses the models
    themselves: slower to start, never different. A version registered without compiled checks
    (an extension's) is always checked by its models; :data:`FELL_BACK` then names it."""
    if version is not None:
        return _compiled_for(version)
    from . import compiled

    return _core_matches() and all(_compiled_for(v) for v in compiled.MODELS)


FELL_BACK: set[str] = set()
"""The versions whose documents were checked by their models rather than compiled checks."""


def _helpers(version: str) -> tuple[Any, ...]:
    """What the compiled functions of ``version`` are passed: its light classes and objects,
    pydantic's constraints and "no default" (``_c, _i, _ge, _le, _U`` in :mod:`.compiled`)."""
    def of_version(name: str, fields: dict[str, Any], fields_set: set[str], extra: dict[str, Any]) -> Light:
        return instance(name, fields, fields_set, extra, version)

    return functools.partial(model_class, version=version), of_version, ge, le, UNSET


@functools.cache
def _compiled_checker(version: str, kind: str) -> Any:
    from .compiled import SCHEMAS

    return SchemaValidator(SCHEMAS[version][kind](*_helpers(version)))


def checker(version: str, kind: str) -> Any:
    """pydantic-core's validator for one kind of one ``apiVersion``, built on first use."""
    if not usable(version):
        if usable():  # the others' compiled checks are in use: say which version is not
            FELL_BACK.add(version)
        return model_checker(version, kind)
    return _compiled_checker(version, kind)


def model_checker(version: str, kind: str) -> Any:
    """The model's own validator for one kind (imports pydantic and the models): it makes the
    runtime's objects, with the same checks and errors as :func:`checker`."""
    found = _versions.get(version)
    return found.models()[kind].__pydantic_validator__


def shapes(version: str = HUB) -> Mapping[str, Mapping[str, FieldShape]]:
    """Every model's fields of one apiVersion by model name (and their light classes' ``model_fields``)."""
    return _shapes(version, usable(version))


@functools.cache
def _shapes(version: str, compiled: bool) -> Mapping[str, Mapping[str, FieldShape]]:
    if compiled:
        from .compiled import SHAPES

        found = SHAPES[version](_helpers(version)[1], UNSET)
    else:
        from .fields import shapes as from_models

        found = from_models(version, UNSET)
    return {name: {n: FieldShape(*f) for n, f in fields.items()} for name, fields in found.items()}


def clear_caches() -> None:
    """Forget what was found of the compiled checks and built from them (tests that change them)."""
    for cached in (_core_matches, _compiled_for, _compiled_checker, _shapes):
        cached.cache_clear()
    FELL_BACK.clear()


def versions() -> Mapping[str, Mapping[str, str]]:
    """Every ``apiVersion`` the validator reads (the registered ones), with the model class name
    of each kind's documents."""
    return {v.api_version: dict(v.kinds) for v in _versions.all_versions()}


def __getattr__(name: str) -> type[Light]:
    # ``from .light import Transformer``: the light class of that model, fields and all.
    if name[:1].isupper():
        return model_class(name)
    raise AttributeError(name)


__all__ = [
    "MLP", "Cluster", "Dataset", "Dedupe", "DropNulls", "FieldShape", "Filter", "GaussianNoise", "HuggingFace",
    "InferenceService", "LabelEncode", "Light", "LinearLayer", "MinMax", "Model", "NormLayer", "Pack", "Pretrained",
    "Sequential", "Standardize", "Tokenize", "TrainingJob", "Transformer", "checker", "clear_caches", "model_checker",
    "model_class",
    "shapes", "usable", "versions",
]
