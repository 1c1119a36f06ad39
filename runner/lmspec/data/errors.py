"""The one exception the data pipeline raises for bad data or a manifest it cannot apply."""

from __future__ import annotations


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
