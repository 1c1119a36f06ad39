"""Each model's fields read from the pydantic models themselves: what the compiled checks record
(:mod:`lmspec.checksgen` writes it out) and what the validator reads when they are not usable.

>>> fields_of("lmspec.io/v1alpha1")["Transformer"]["vocab_size"][:2]
('vocabSize', ('scalar', 'int'))

Imports pydantic and the models: only ``python -m lmspec.schemagen`` and a validator without
usable compiled checks come here.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .. import versions


def type_tree(tp: Any) -> Any:
    """A field's annotation as the nested tuples of :class:`lmspec.manifests.light.FieldShape`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_tree(args[0])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return ("model", tp.__name__)
    if origin is list:
        return ("list", type_tree(args[0]))
    if origin is dict:
        return ("dict", type_tree(args[0]), type_tree(args[1]))
    if origin in (typing.Union, types.UnionType):
        return ("union", tuple(type_tree(a) for a in args))
    if origin is typing.Literal:
        return ("literal", args)
    if tp is type(None):
        return ("scalar", "None")
    if tp is typing.Any:
        return ("scalar", "Any")
    if isinstance(tp, type):
        return ("scalar", tp.__name__)
    raise ValueError(f"cannot compile the type {tp!r}")


def reachable(roots: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """Every model the ``roots`` reach through their fields, once each; within one apiVersion
    model names are unique (light classes are found by version and name)."""
    seen: dict[str, type[BaseModel]] = {}
    todo = list(roots)

    def models(tp: Any) -> list[type[BaseModel]]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return [tp]
        return [m for a in typing.get_args(tp) for m in models(a)]

    while todo:
        cls = todo.pop(0)
        known = seen.get(cls.__name__)
        if known is not None:
            if known is not cls:
                raise ValueError(f"two models are named {cls.__name__}")
            continue
        seen[cls.__name__] = cls
        for f in cls.model_fields.values():
            todo.extend(models(f.annotation))
    return list(seen.values())


def fields_of(version: str) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Each model of one apiVersion, by name: its fields' key, type, default
    (``PydanticUndefined`` when none), first example and whether it has one."""
    return {cls.__name__: {name: (f.alias or name, type_tree(f.annotation), f.default,
                                  f.examples[0] if f.examples else None, bool(f.examples))
                           for name, f in cls.model_fields.items()}
            for cls in reachable(list(versions.get(version).models().values()))}


def shapes(version: str, unset: Any) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Each model's fields as the compiled checks hold them, ``unset`` for no default."""
    return {model: {name: (alias, tree, unset if default is PydanticUndefined else default, example, has)
                    for name, (alias, tree, default, example, has) in fields.items()}
            for model, fields in fields_of(version).items()}
