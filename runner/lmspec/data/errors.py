"""The one exception the data pipeline raises for bad data or a manifest it cannot apply."""

from __future__ import annotations

import re


class DataError(Exception):
    """A problem with the data a ``Dataset`` manifest describes, located for a person to fix.

    >>> str(DataError("value 'abc' is not a number", file="iris.csv", row=12,
    ...               column="sepal_length", field="spec.features[0]"))
    "iris.csv, row 12, column 'sepal_length' (spec.features[0]): value 'abc' is not a number"

    ``row`` counts as a person does: 1-based, and for csv the header is row 1; for jsonl it is
    the line number (``unit="line"``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        unit: str = "row",
        column: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.unit = unit
        self.column = column
        self.field = field
        self.hint = hint
        where = [p for p in (file, f"{unit} {row}" if row is not None else None,
                             f"column {column!r}" if column is not None else None) if p]
        text = ", ".join(where)
        if field:
            text = f"{text} ({field})" if text else field
        text = f"{text}: {message}" if text else message
        if hint:
            text += f" ({hint})"
        super().__init__(text)


EXCERPT_CHARS = 20
"""The most characters of a data value a message shows: enough to find the value in the file,
too few to copy a document (or a credential) into logs and CI output."""

# Text that looks like a credential is never shown, not even in part: a message may end up in a
# CI log, and a data file may hold a line that was never meant to be data.
_SECRET = re.compile(
    r"(?i:secret|passw|pwd|token|credential|bearer|authorization|private.?key|api.?key"
    r"|\w*key\s*[=:])"
    r"|(?:AKIA|ASIA)[0-9A-Z]{12,}"
    r"|-----BEGIN"
    r"|(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{32,}"
    r"|(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])(?=[A-Za-z0-9+/_-]*[0-9])[A-Za-z0-9+/_-]{24,}")


def looks_secret(text: str) -> bool:
    """True for text that looks like a credential (``key=…``, a token, an AWS key id, a long run
    of hex or base64)."""
    return _SECRET.search(text) is not None


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str | None:
    """A data value as a message may show it, at most ``limit`` characters long (``…`` marks a
    cut): text quoted, with backslashes, quotes and unprintable characters
    escaped; anything else as its ``repr``. None when it looks like a credential.

    >>> excerpt("5.1x"), excerpt("a" * 40), excerpt("3.5\\x00"), excerpt(1e300)
    ("'5.1x'", "'aaaaaaaaaaaaaaaaaaa…'", "'3.5\\\\x00'", '1e+300')
    >>> excerpt("aws_secret_access_key=abc") is None
    True
    """
    text = value if isinstance(value, str) else repr(value)
    if looks_secret(text):
        return None
    pieces = [_escape(ch) for ch in text] if isinstance(value, str) else list(text)
    if sum(map(len, pieces)) > limit:
        kept, size = [], 0
        for piece in pieces:
            if size + len(piece) > limit - 1:
                break
            kept.append(piece)
            size += len(piece)
        pieces = [*kept, "…"]
    shown = "".join(pieces)
    return f"'{shown}'" if isinstance(value, str) else shown


def _escape(ch: str) -> str:
    if ch in "\\'":
        return "\\" + ch
    return ch if ch.isprintable() else repr(ch)[1:-1]


def value_phrase(value: object, noun: str = "value") -> str:
    """``value '5.1x'`` for a message about one data value (``label 'x'`` with ``noun``), or
    words that withhold it; the message's location names the file, row and column."""
    shown = excerpt(value)
    return f"{noun} {shown}" if shown is not None else f"a {noun} that looks like a credential (not shown)"


NAME_CHARS = 40
"""The most characters of a column or field name from a data file a message shows (a csv's
header is its first line, whatever that line holds)."""


def names_phrase(names: list[str], most: int = 12) -> str:
    """Names read from a data file (a csv's header, a record's keys) for a message: the first
    ``most``, and how many there are in all when some are left out. A plain name (letters,
    digits, ``_.-``) is shown as it is; any other as an :func:`excerpt` of at most
    :data:`NAME_CHARS` characters; none that looks like a credential.

    >>> names_phrase(["a", "b c", "api_key=abc"])
    "a, 'b c', (a name that looks like a credential)"
    """
    shown = []
    for name in names[:most]:
        quoted = excerpt(name, NAME_CHARS)
        plain = quoted is not None and len(name) <= NAME_CHARS and _PLAIN_NAME.fullmatch(name) is not None
        shown.append(name if plain else quoted or "(a name that looks like a credential)")
    more = f", … ({len(names)} in all)" if len(names) > most else ""
    return (", ".join(shown) or "(none)") + more


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
