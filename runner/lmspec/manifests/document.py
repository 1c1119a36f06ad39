"""One parsed YAML or JSON document: its plain data and where each part of it was written.

>>> [doc] = lmspec.validator.parse.parse_text("kind: Model\nspec: {task: regression}\n", "m.yaml")
>>> doc.data["spec"]["task"], doc.locate(("spec", "task"))
('regression', (2, 14))

The validator's parser (:mod:`lmspec.validator.parse`) makes documents; the validator's
findings, the runtime's messages and ``lmspec render`` read their positions.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Position = tuple[int, int]
"""1-based (line, column)."""


@dataclass(slots=True)
class Loc:
    """Position of a mapping or sequence, of its keys, and of its children (a :class:`Loc` for
    containers, just the position for scalars: manifests are mostly scalars)."""

    pos: Position
    keys: dict[str, Position] = field(default_factory=dict)
    children: dict[str | int, Loc | Position] = field(default_factory=dict)


@dataclass
class Document:
    """One YAML document: its data and where each part of it was written."""

    data: Any
    file: str
    index: int
    """Position of the document within its file, from 0."""
    loc: Loc | None = None
    """Positions; None until first needed when the document was parsed without them: they are
    then made from ``flat`` (or found again from ``text``). Most documents are never asked where
    anything is, and a :class:`Loc` per node is most of what positions cost."""
    text: str = ""
    flat: bytes = b""
    """Positions in document order, as the parser writes them (:func:`positions_of` reads them):
    compact to keep and to send between processes."""

    def positions(self) -> Loc:
        if self.loc is None:
            if self.flat:
                self.loc = positions_of(self.data, array.array("I", self.flat))
            else:
                self.loc = _PARSERS[0](self.text, self.file)[self.index].positions()
        return self.loc

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> Position:
        """Line and column of the node at ``path``; with ``key``, of the last key itself.

        A path that leaves the document (a missing key) resolves to the deepest node that exists,
        which is the mapping the key is missing from.
        """
        loc = self.positions()
        for i, part in enumerate(path):
            if key and i == len(path) - 1 and part in loc.keys:
                return loc.keys[str(part)]
            child = loc.children.get(part)
            if child is None:
                return loc.pos
            if isinstance(child, tuple):  # a scalar: nothing below it
                return child
            loc = child
        return loc.pos


def positions_of(data: Any, flat: Iterable[int]) -> Loc:
    """The document's positions from what the parser (``lmspec.validator.parse``) wrote for ``data``."""
    found = _unflatten(data, iter(flat))
    return found if isinstance(found, Loc) else Loc(found)


def _unflatten(data: Any, flat: Iterator[int]) -> Loc | Position:
    """The positions the parser (``lmspec.validator.parse``) wrote for ``data``: a :class:`Loc` for containers, the
    position alone for scalars."""
    pos = (next(flat), next(flat))
    if type(data) is dict:
        loc = Loc(pos)
        for key, value in data.items():
            loc.keys[key] = (next(flat), next(flat))
            loc.children[key] = _unflatten(value, flat)
        return loc
    if type(data) is list:
        loc = Loc(pos)
        for i, value in enumerate(data):
            loc.children[i] = _unflatten(value, flat)
        return loc
    return pos


_PARSERS: list[Callable[[str, str], list[Document]]] = []
"""The parser that finds a document's positions again from its text (registered by it)."""


def set_parser(parse: Callable[[str, str], list[Document]]) -> None:
    """Register the parser documents are made by: one kept without positions finds them again
    by parsing its text once more."""
    _PARSERS[:] = [parse]
