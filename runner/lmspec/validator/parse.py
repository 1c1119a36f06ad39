"""Layer 1: read YAML (1.2 core schema) and JSON into plain data, keeping every node's position.

PyYAML's constructors implement YAML 1.1 (``on`` and ``no`` are booleans, ``1e-4`` is a string,
timestamps become datetimes) and follow aliases without limit. We therefore drive libyaml's event
parser ourselves and build the data iteratively: YAML 1.2 scalar resolution, duplicate keys
rejected, depth and alias expansion bounded, and a position kept for every key and value.
"""

from __future__ import annotations

import array
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ..manifests.document import Document, Loc, Position, positions_of, set_parser

# libyaml is ~10x faster; the pure-Python parser emits the same events. Only the parsers' events
# are used, never their constructors.
_Parser = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

MAX_BYTES = 16 * 1024 * 1024
"""Largest file read, by default."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted; manifests need fewer than 15."""
MAX_NODES = 200_000
"""Most nodes one document may expand to, aliases included (stops "billion laughs")."""
MAX_INT_BITS = 8192
"""Largest integer literal accepted (about 2,466 decimal digits). Python refuses to print
integers of more than 4,300 digits, and no manifest field needs anything near this."""

class ParseError(Exception):
    """Input that is not a well-formed manifest file; carries a rule id and a position."""

    def __init__(self, rule: str, message: str, file: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.rule = rule
        self.message = message
        self.file = file
        self.line = line
        self.column = column


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_EXPLICIT = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
}


_NOT_A_STRING_START = frozenset("0123456789+-.~tTfFnN")
"""First characters of the plain scalars that are not strings (numbers, booleans, null)."""


def resolve_plain(value: str) -> Any:
    """The value of an untagged plain scalar under the YAML 1.2 core schema."""
    first = value[:1]
    if not first or first not in _NOT_A_STRING_START:  # most scalars: no pattern can match
        return None if not first else value
    if first in "tTfF":
        return _BOOL.get(value, value)
    if first in "nN~":
        return None if _NULL.match(value) else value
    if value.isascii() and value.isdigit():  # plain decimal digits, the commonest number
        return int(value)
    if _INT10.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if _INT8.match(value):
        return int(value[2:], 8)
    if _INT16.match(value):
        return int(value[2:], 16)
    if _INF.match(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.match(value):
        return math.nan
    return value


def _plain(event: yaml.ScalarEvent, file: str) -> Any:
    try:
        value = resolve_plain(event.value)
    except ValueError:  # an integer literal beyond the interpreter's conversion limit
        value = None
        too_big = True
    else:
        too_big = type(value) is int and value.bit_length() > MAX_INT_BITS
    if too_big:
        raise ParseError("parse.too-large", f"integer literal longer than {MAX_INT_BITS} bits",
                         file, *_pos(event.start_mark))
    return value


def _scalar(event: yaml.ScalarEvent, file: str) -> Any:
    try:
        value = _scalar_value(event, file)
    except ValueError:  # an integer literal beyond the interpreter's conversion limit
        value = None
        too_big = True
    else:
        too_big = isinstance(value, int) and value.bit_length() > MAX_INT_BITS
    if too_big:
        raise ParseError("parse.too-large", f"integer literal longer than {MAX_INT_BITS} bits",
                         file, *_pos(event.start_mark))
    return value


def _scalar_value(event: yaml.ScalarEvent, file: str) -> Any:
    tag = event.tag
    if tag is None:  # untagged: plain scalars are resolved, quoted ones are strings
        return resolve_plain(event.value) if event.implicit[0] else event.value
    if tag == "!":  # the non-specific tag: a string
        return event.value
    if tag not in _EXPLICIT:
        raise ParseError("parse.tag", f"unsupported tag {tag!r}", file, *_pos(event.start_mark))
    if tag == _STR_TAG:
        return event.value
    value = resolve_plain(event.value)
    expected: Any = {"tag:yaml.org,2002:int": int, "tag:yaml.org,2002:float": (int, float),
                "tag:yaml.org,2002:bool": bool, "tag:yaml.org,2002:null": type(None)}.get(tag)
    if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        raise ParseError("parse.tag", f"{event.value!r} is not a valid {tag.rsplit(':', 1)[-1]}",
                         file, *_pos(event.start_mark))
    return float(value) if tag.endswith(":float") else value


def _pos(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


def _duplicate(key: str, loc: Loc, pos: Position, file: str) -> ParseError:
    first = loc.keys.get(key, pos)
    return ParseError("parse.duplicate-key", f"duplicate key {key!r} (first defined at line {first[0]})",
                      file, *pos)


_ScalarEvent = yaml.ScalarEvent
_AliasEvent = yaml.AliasEvent
_MappingStartEvent = yaml.MappingStartEvent
_MappingEndEvent = yaml.MappingEndEvent
_SequenceStartEvent = yaml.SequenceStartEvent
_SequenceEndEvent = yaml.SequenceEndEvent
_DocumentStartEvent = yaml.DocumentStartEvent
_DocumentEndEvent = yaml.DocumentEndEvent
_StreamEndEvent = yaml.StreamEndEvent


def _documents(stream: str, file: str) -> Iterator[tuple[Any, Loc]]:
    parser = _Parser(stream)
    get_event = parser.get_event
    try:
        # Containers under construction: [value, loc, pending_key, pending_key_pos, size, anchor].
        stack: list[list[Any]] = []
        anchors: dict[str, tuple[Any, Loc | Position, int]] = {}
        nodes = 0
        root: tuple[Any, Loc | Position] | None = None
        while True:
            event = get_event()
            cls = type(event)
            value: Any
            loc: Loc | Position
            size = 1
            if cls is _ScalarEvent:
                m = event.start_mark
                pos = (m.line + 1, m.column + 1)
                parent = stack[-1] if stack else None
                if (parent is not None and parent[2] is None and type(parent[0]) is dict
                        and event.tag is None and not event.anchor):
                    # The common case, a plain key: kept as written (`1:` and `on:` are the
                    # keys "1" and "on"), never resolved.
                    key = event.value
                    if key in parent[0]:
                        raise _duplicate(key, parent[1], pos, file)
                    parent[2], parent[3] = key, pos
                    parent[4] += 1
                    nodes += 1
                    continue
                if event.tag is None:  # untagged: plain scalars are resolved, quoted ones are strings
                    value = event.value
                    if event.implicit[0] and (not value or value[0] in _NOT_A_STRING_START):
                        value = _plain(event, file)
                else:
                    value = _scalar(event, file)
                loc = pos
                if event.anchor:
                    anchors[event.anchor] = (value, loc, 1)
            elif cls is _MappingStartEvent or cls is _SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    raise ParseError("parse.too-deep", f"nesting deeper than {MAX_DEPTH} levels",
                                     file, *_pos(event.start_mark))
                is_map = cls is _MappingStartEvent
                if event.tag is not None and event.tag not in ("!", _MAP_TAG if is_map else _SEQ_TAG):
                    raise ParseError("parse.tag", f"unsupported tag {event.tag!r}", file,
                                     *_pos(event.start_mark))
                container: Any = {} if is_map else []
                stack.append([container, Loc(_pos(event.start_mark)), None, None, 1, event.anchor])
                continue
            elif cls is _MappingEndEvent or cls is _SequenceEndEvent:
                value, loc, _k, _kp, size, anchor = stack.pop()
                if anchor:
                    anchors[anchor] = (value, loc, size)
            elif cls is _AliasEvent:
                if event.anchor not in anchors:
                    m = event.start_mark
                    raise ParseError("parse.syntax", f"unknown alias *{event.anchor}", file, *_pos(m))
                value, target, size = anchors[event.anchor]
                pos = _pos(event.start_mark)
                loc = pos if isinstance(target, tuple) else Loc(pos, target.keys, target.children)
            elif cls is _DocumentStartEvent:
                anchors.clear()
                nodes = 0
                root = None
                continue
            elif cls is _DocumentEndEvent:
                assert root is not None
                data, top = root
                yield data, (top if isinstance(top, Loc) else Loc(top))
                continue
            elif cls is _StreamEndEvent:
                return
            else:  # the stream start
                continue

            nodes += size
            if nodes > MAX_NODES:
                raise ParseError("parse.too-large",
                                 f"document expands to more than {MAX_NODES} nodes (aliases included)",
                                 file, *_pos(event.start_mark))
            if not stack:
                root = (value, loc)
                continue
            parent = stack[-1]
            parent[4] += size
            container = parent[0]
            if type(container) is list:
                parent[1].children[len(container)] = loc
                container.append(value)
            elif parent[2] is None:
                where = loc if isinstance(loc, tuple) else loc.pos
                if isinstance(value, (dict, list)):
                    raise ParseError("parse.key", "mapping keys must be scalars", file, *where)
                # Keys are kept as written: `1:` and `on:` are the keys "1" and "on".
                key = event.value if cls is _ScalarEvent else str(value)
                if key in container:
                    raise _duplicate(key, parent[1], where, file)
                parent[2], parent[3] = key, where
            else:
                key = parent[2]
                container[key] = value
                parent[1].keys[key] = parent[3]
                parent[1].children[key] = loc
                parent[2] = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _pos(mark) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000 flow levels)
            raise ParseError("parse.too-deep", f"nesting deeper than {MAX_DEPTH} levels",
                             file, line, column) from None
        if exc.context:
            cm = exc.context_mark
            started = f" at line {cm.line + 1}, column {cm.column + 1}" if cm and cm is not mark else ""
            problem = f"{problem} ({exc.context}{started})"
        raise ParseError("parse.syntax", problem, file, line, column) from None
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        raise ParseError("parse.syntax", str(exc).splitlines()[0], file) from None


def decode(raw: bytes, file: str) -> str:
    """Bytes to text: UTF-8 (optional BOM) or BOM-marked UTF-16; anything else is an error."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise ParseError("parse.encoding", "invalid UTF-16", file) from None
    if b"\x00" in raw:
        line, column = _byte_position(raw, raw.index(b"\x00"))
        raise ParseError("parse.encoding", "binary file (NUL byte)", file, line, column)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # exc.start counts in exc.object: the input after its byte order mark, if it has one.
        line, column = _byte_position(exc.object, exc.start)
        raise ParseError("parse.encoding", f"not UTF-8: invalid byte 0x{exc.object[exc.start]:02x}",
                         file, line, column) from None


def _byte_position(raw: bytes, offset: int) -> Position:
    """Line and column of a byte of UTF-8 input, counted like every other position: in
    characters, with libyaml's line breaks. A byte before it that is not UTF-8 counts as one
    character."""
    before = raw[:offset].decode("utf-8-sig", "surrogateescape")
    return _position_of(before, len(before))


def _check_json(text: str, file: str) -> None:
    """Hold .json files to JSON: YAML would accept trailing commas, comments and unquoted keys."""
    import json  # here: most runs read no JSON file, and start-up time counts

    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        # Not exc.lineno and exc.colno: the json module counts only "\n" as a line break, and
        # every other position reported for the file counts lines as libyaml does.
        line, column = _position_of(text, exc.pos)
        raise ParseError("parse.syntax", exc.msg, file, line, column) from None
    except (ValueError, RecursionError):
        pass  # over-long numbers and deep nesting: the YAML pass reports them with a position


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""Line breaks as libyaml counts them."""


def _position_of(text: str, offset: int) -> Position:
    """Line and column (from 1) of a character offset, with line breaks as libyaml counts them."""
    line, start = 1, 0
    for found in _LINE_BREAK.finditer(text, 0, offset):
        line, start = line + 1, found.end()
    return line, offset - start + 1


def _clamp(text: str, line: int, column: int) -> Position:
    lines = _LINE_BREAK.split(text)
    if line > len(lines):
        return len(lines), len(lines[-1]) + 1
    return line, column


def parse_text(text: str, file: str = "<stdin>", *, positions: bool = True) -> list[Document]:
    """All documents of a YAML or JSON text. Raises :class:`ParseError`. Without ``positions``
    the documents find their positions again when first asked (:meth:`Document.positions`)."""
    if file.endswith(".json"):
        _check_json(text, file)
        # JSON forbids raw tabs inside strings, so turning tabs into spaces only changes the
        # insignificant whitespace that libyaml rejects, and keeps every column where it was.
        text = text.replace("\t", " ")
    try:
        parsed = _compose_documents(text, positions)
        if parsed is None:  # anything the fast path does not handle, errors included
            parsed = [(data, loc, b"") for data, loc in _documents(text, file)]
        docs = [Document(data, file, i, loc, text, flat) for i, (data, loc, flat) in enumerate(parsed)]
    except UnicodeEncodeError as exc:  # lone surrogates: text that was never valid Unicode
        line, column = _position_of(text, exc.start)
        raise ParseError("parse.encoding", "invalid Unicode (lone surrogate)", file, line, column) from None
    except ParseError as exc:
        # libyaml reports "end of input" one line past the last line when the text lacks a
        # final newline; editors and SARIF viewers want a position that exists.
        exc.line, exc.column = _clamp(text, exc.line, exc.column)
        raise
    # `---` separators leave empty (null) documents; they say nothing, so drop them.
    docs = [d for d in docs if d.data is not None]
    for i, doc in enumerate(docs):
        doc.index = i
    if not docs:
        raise ParseError("parse.empty", "no manifest in input (empty file)", file)
    return docs


def read_bounded(fh: BinaryIO, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``fh`` (one more than allowed, so the caller can tell).

    ``fh.read(max_bytes + 1)`` would allocate the whole limit (16 MiB) for every small file;
    regular files are read by their size, pipes and terminals in chunks.
    """
    try:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # streams without a file descriptor
        regular = False
    if regular:
        return fh.read(max_bytes + 1) if os.fstat(fh.fileno()).st_size > max_bytes else fh.read()
    chunks, size = [], 0
    while size <= max_bytes:
        chunk = fh.read(min(1 << 20, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def parse_file(path: str | Path, *, max_bytes: int = MAX_BYTES, positions: bool = True) -> list[Document]:
    """All documents of a file. Raises :class:`ParseError`, also for unreadable files."""
    name = str(path)
    try:
        # Non-blocking, then checked: opening a FIFO for reading would wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise ParseError("parse.io", "is not a regular file (a FIFO, socket or device); only "
                                 "regular files are read", name)
            raw = read_bounded(fh, max_bytes)
    except FileNotFoundError:
        raise ParseError("parse.io", "no such file", name) from None
    except IsADirectoryError:
        raise ParseError("parse.io", "is a directory", name) from None
    except OSError as exc:
        raise ParseError("parse.io", exc.strerror or str(exc), name) from None
    except (ValueError, UnicodeError):  # a NUL byte or an unencodable character in the name
        raise ParseError("parse.io", "is not a valid file name", name) from None
    if len(raw) > max_bytes:
        raise ParseError("parse.too-large", f"file larger than {max_bytes} bytes", name)
    return parse_text(decode(raw, name), name, positions=positions)


# --- the fast path -----------------------------------------------------------------------------
#
# Most manifests use no tags, anchors or aliases. For those, libyaml composes the node tree in C
# (no Python event objects) and one pass over the nodes builds the data and positions. Anything
# else — tags, anchors, aliases, inputs large enough to reach the node limit, and every input the
# fast path finds fault with — goes through ``_documents`` above, which stays the reference: it
# alone produces parse errors, so their rules, messages and positions do not depend on the path.

_CParser: Any = getattr(getattr(yaml, "_yaml", None), "CParser", None)
_ScalarNode = yaml.ScalarNode
_MappingNode = yaml.MappingNode
_FAST_MAX_CHARS = MAX_NODES // 2
"""Texts up to this length cannot expand to ``MAX_NODES`` nodes without aliases (every node
takes at least one character), so the fast path need not count nodes."""


class _Fallback(Exception):
    """The fast path declines the input; ``_documents`` handles it."""


_FAST_MAX_NESTING = 1000
"""Deepest nesting libyaml's composer is shown. It recurses in C, out of reach of the
interpreter's recursion limit, and libyaml builds without a nesting limit of their own (those in
PyYAML 6.0.3's wheels) crash the process on text nested some 30,000 levels deep; the event path
reads any depth and reports more than ``MAX_DEPTH`` with its position."""
_INDICATORS = " \t?:.-\ufeff"


def _shallow(text: str) -> bool:
    """Whether ``text`` surely nests at most ``_FAST_MAX_NESTING`` levels, by a cheap bound: each
    flow level opens with a ``[`` or ``{`` (quoted ones counted too), and each block level starts
    further right on its line than its parent (a sequence at its key's indentation aside), after
    indentation and indicators (``- ``, ``? ``, ``: ``, ``--- ``)."""
    if text.count("[") + text.count("{") > _FAST_MAX_NESTING // 2:
        return False
    lines = text.split("\n") if text.isascii() and "\r" not in text else _LINE_BREAK.split(text)
    limit = _FAST_MAX_NESTING // 4  # two block levels a column at most: half the budget
    return max(map(len, lines)) < limit or max(len(s) - len(s.lstrip(_INDICATORS)) for s in lines) < limit


if _CParser is not None:
    class _Composer(_CParser):  # type: ignore[misc]
        """libyaml's composer without PyYAML's YAML 1.1 tag resolution: every untagged node's
        tag is left None, and the 1.2 core schema is applied to plain scalars below."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> None:
            return None

        def descend_resolver(self, parent: Any, index: Any) -> None:
            return None

        def ascend_resolver(self) -> None:
            return None


def _compose_documents(text: str, positions: bool = True) -> list[tuple[Any, Loc | None, bytes]] | None:
    """Data and positions of every document (flat positions, :func:`_flat`, without
    ``positions``), or None when the input needs the event path."""
    if _CParser is None or len(text) > _FAST_MAX_CHARS or "!" in text or "&" in text or not _shallow(text):
        return None  # no C parser; possibly many nodes; maybe tags; maybe anchors; maybe deep
    try:
        parser = _Composer(text)
        out: list[tuple[Any, Loc | None, bytes]] = []
        while parser.check_node():
            flat: list[int] = []
            data = _flat(parser.get_node(), 0, flat)
            if positions:
                out.append((data, positions_of(data, flat), b""))
            else:
                out.append((data, None, array.array("I", flat).tobytes()))
        return out
    except Exception:  # syntax errors, limits, duplicates: the event path reports them exactly
        return None


def _flat(node: Any, depth: int, out: list[int]) -> Any:
    """One node's value; raises :class:`_Fallback` on anything but plain data. The positions go
    to ``out`` in document order (each node's line and column, and in a mapping each key's
    before its value's): compact to keep and to send, made into a :class:`Loc` by
    :func:`~lmspec.manifests.document.positions_of` only when asked."""
    mark = node.start_mark
    out += (mark.line + 1, mark.column + 1)
    if node.__class__ is _ScalarNode:
        value = node.value
        if node.style == "" and (not value or value[0] in _NOT_A_STRING_START):  # plain: resolve
            value = resolve_plain(value)
            if type(value) is int and value.bit_length() > MAX_INT_BITS:
                raise _Fallback
        return value
    if depth >= MAX_DEPTH:
        raise _Fallback
    if node.__class__ is _MappingNode:
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.__class__ is not _ScalarNode:
                raise _Fallback  # a mapping or sequence as a key
            key = key_node.value  # kept as written: `1:` and `on:` are the keys "1" and "on"
            if key in mapping:
                raise _Fallback  # a duplicate key
            km = key_node.start_mark
            out += (km.line + 1, km.column + 1)
            mapping[key] = _flat(value_node, depth + 1, out)
        return mapping
    return [_flat(item, depth + 1, out) for item in node.value]


set_parser(parse_text)  # a document kept without positions finds them by parsing again
