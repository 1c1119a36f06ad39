r"""Round-trip YAML for ``lmspec convert``: loading that keeps comments, quoting and style, plain
data out of it, and writing converted plain data back over it.

>>> import io
>>> yaml = loader("a: 1  # one\n")
>>> doc = merge(yaml.load("a: 1  # one\n"), {"a": 1, "b": 2})
>>> out = io.StringIO(); yaml.dump(doc, out); print(out.getvalue(), end="")
a: 1  # one
b: 2
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def loader(text: str) -> Any:
    """A ruamel.yaml round-trip loader and dumper set up for ``text``: YAML 1.2 as lmspec reads
    it, the text's own indentation, no folding."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import RoundTripConstructor

    class Constructor(RoundTripConstructor):
        """YAML 1.2's core schema, as lmspec reads it: a date is a string."""

    Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)

    yaml = YAML()  # round trip, YAML 1.2
    yaml.Constructor = Constructor
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a line the author did not
    yaml.brace_single_entry_mapping_in_flow_sequence = True  # [{path: a}], not [path: a]
    mapping, sequence, offset = guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = text.lstrip().startswith("---")
    return yaml


def guess_indent(text: str) -> tuple[int, int, int]:
    """``(mapping indent, sequence indent, dash offset)`` as the text writes them (2, 2, 0 when it
    does not tell): ``- a`` right under its key is ``(2, 2, 0)``, indented by two ``(2, 4, 2)``."""
    mapping, sequence, offset = None, None, None
    parent: int | None = None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if parent is not None and indent > parent:
            if stripped.startswith("- ") and offset is None:
                offset = indent - parent
                rest = stripped[1:]
                sequence = offset + 1 + len(rest) - len(rest.lstrip(" "))
            elif not stripped.startswith("- ") and mapping is None:
                mapping = indent - parent
        parent = indent if re.match(r"^[^#\s][^#]*:\s*(#.*)?$", stripped) and not stripped.startswith("- ") else None
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    if offset is None:
        return mapping, mapping, 0
    return mapping, max(sequence or 2, offset + 2), offset


def position(doc: Any, path: Sequence[str | int]) -> tuple[int, int]:
    """1-based (line, column) of the deepest node of ``path`` that the loaded document has."""
    line, column = 0, 0
    lc = getattr(doc, "lc", None)
    if lc is not None:
        line, column = lc.line, lc.col
    node = doc
    for depth, part in enumerate(path):
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and part in node:
                # A scalar is pointed at by its value, a mapping or a list by its key.
                last = depth == len(path) - 1 and not isinstance(node[part], dict | list)
                if lc is not None:
                    line, column = lc.value(part) if last else lc.key(part)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line, column = lc.item(part) if lc is not None else (line, column)
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line + 1, column + 1


# --- Plain data and merging ----------------------------------------------------------------------

def to_plain(node: Any) -> Any:
    """ruamel.yaml's round-trip objects as plain dicts, lists, str, int, float, bool and None."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return bool(node) if node is not None else None
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag == "tag:yaml.org,2002:str" and isinstance(getattr(node, "value", None), str):
        return str(node.value)  # !!str 5: the string "5"
    return node


def _equal_scalar(old: Any, new: Any) -> bool:
    plain = to_plain(old)
    if isinstance(plain, bool) or isinstance(new, bool):
        return type(plain) is type(new) and plain == new
    if isinstance(plain, int | float) and isinstance(new, int | float):
        return plain == new
    return type(plain) is type(new) and plain == new


def merge(old: Any, new: Any) -> Any:
    """``new`` (plain data) written over the loaded node ``old``: nodes whose value is unchanged
    are kept (with their comments, quoting and style); a key renamed in place takes over the
    comment of the key it replaces."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(new, dict) and isinstance(old, CommentedMap):
        removed = [k for k in old if k not in new]
        added = [k for k in new if k not in old]
        comments = old.ca.items
        for gone, came in zip(removed, added, strict=False):
            if gone in comments and came not in comments:
                comments[came] = comments.pop(gone)
        for key in removed:
            del old[key]
            comments.pop(key, None)
        for index, (key, value) in enumerate(new.items()):
            if key in old:
                merged = merge(old[key], value)
                if merged is not old[key]:
                    old[key] = merged
            else:
                old.insert(index, key, fresh(value))
        if list(old) != list(new):  # the new order, where the conversion moved a key
            for key in new:
                old.move_to_end(key)
        return old
    if isinstance(new, list) and isinstance(old, CommentedSeq):
        for index, value in enumerate(new):
            if index < len(old):
                merged = merge(old[index], value)
                if merged is not old[index]:
                    old[index] = merged
            else:
                old.append(fresh(value))
        del old[len(new):]
        return old
    if not isinstance(new, dict | list) and not isinstance(old, dict | list) and _equal_scalar(old, new):
        return old
    return fresh(new)


def fresh(value: Any) -> Any:
    """A plain value ready for the round-trip dumper (multi-line strings as literal blocks)."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


__all__ = ["fresh", "guess_indent", "loader", "merge", "position", "to_plain"]
