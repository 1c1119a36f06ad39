"""Field descriptions from attribute docstrings, attached only when schemas or docs are generated.

One function for every API version's models: ``attach_field_docs(versions.get("v1beta1").models())``.

Every field is documented by the string literal below it. pydantic can read those itself
(``use_attribute_docstrings``), but only by parsing each class's source when the class is created,
which made up a fifth of ``lmspec validate``'s start-up; validation needs no descriptions. The
schema generator, ``lmspec explain`` and ``lmspec schema`` call :func:`attach_field_docs` first.
"""


import ast
import inspect
import itertools
import textwrap
import typing
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

_attached: set[type[BaseModel]] = set()
"""The document classes whose models already carry their descriptions."""


def attach_field_docs(kinds: Mapping[str, type[BaseModel]]) -> None:
    """Set the ``description`` of every field of one version's models (``kinds``: kind →
    document class) from its docstring, and rebuild the models (children first, since a parent's
    schema embeds its children's) so schemas carry them. Only the version's own classes are read,
    not pydantic's."""
    roots = [cls for cls in kinds.values() if cls not in _attached]
    if not roots:
        return
    package = roots[0].__module__.rpartition(".")[0] + "."
    order = list(_post_order(roots))
    for cls in order:
        docs: dict[str, str] = {}
        for base in reversed(cls.__mro__):  # a subclass's docstring wins over its base's
            if isinstance(base, type) and issubclass(base, BaseModel) and base.__module__.startswith(package):
                docs.update(_attribute_docs(base))
        for name, info in cls.model_fields.items():
            if info.description is None and name in docs:
                info.description = docs[name]
    for cls in order:
        cls.model_rebuild(force=True)
    _attached.update(roots)


def _attribute_docs(cls: type) -> dict[str, str]:
    """``{attribute: docstring}`` for the annotated attributes of ``cls`` followed by a string."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (frozen or stripped install): no descriptions
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, following in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _post_order(roots: list[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """Every model reachable from ``roots`` through field types, each after the models it holds."""
    seen: set[type[BaseModel]] = set()

    def visit(cls: type[BaseModel]) -> Iterator[type[BaseModel]]:
        seen.add(cls)
        for info in cls.model_fields.values():
            for child in _models_in(info.annotation):
                if child not in seen:
                    yield from visit(child)
        yield cls

    for root in roots:
        if root not in seen:
            yield from visit(root)


def _models_in(tp: object) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]
