"""Checks a CSV column against its type and returns it ready for COPY (CSV).

PostgreSQL would reject most bad values itself, but only in the middle of a
COPY and without the file's line number; checking here lets the error name
the file, line and column, and keeps the server's looser spellings ("yes",
"1", " 12 ") out of the raw layer.

Columns are checked whole: one regular expression over the column joined by
newlines settles the usual all-valid case in C, and only a column that fails
it is walked value by value to say which lines are wrong. This keeps a month
(250,000 cells) to a few hundredths of a second. Two things the joined
text cannot show are checked apart: a quoted cell holding a line break looks
like two valid values, and Python's \\d also matches non-ASCII digits that
PostgreSQL rejects, so the patterns spell digits as [0-9].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from scripts.ingest.schema import Column, Kind

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
# The course files write True/False; any letter case is accepted because a
# spreadsheet round trip turns them into TRUE/FALSE. Nothing else counts as
# a boolean (no 1/0, yes/no): those would hide a shifted column. PostgreSQL
# reads true/false in any case, so valid values pass through unchanged.
BOOLEAN_PATTERN = r"(?i:true|false)"
# Nine digits always fit in an int4; longer ones take the exact check.
SHORT_INTEGER_PATTERN = r"[+-]?[0-9]{1,9}"
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMERIC_PATTERN = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# Short enough to fit a double (the snapshot models cast to double precision)
# whatever the digits; longer mantissas and exponents take the range check.
SHORT_NUMERIC_PATTERN = (
    r"[+-]?(?:[0-9]{1,15}\.?[0-9]{0,30}|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,2})?"
)
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
# Text without these needs no CSV quoting in the COPY stream (NUL cannot be
# stored in PostgreSQL text at all; to_text rejects it).
PLAIN_TEXT_PATTERN = r'[^,"\r\n\x00]+'


# Longer values are cut in messages: a runaway cell can be 100,000 characters.
SHOWN_CHARS = 40


@dataclass(frozen=True)
class ColumnResult:
    values: list[str]
    # (index into the column, what is wrong), in column order.
    problems: list[tuple[int, str]]


def shown(value: str) -> str:
    """The value as quoted in an error message."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def to_text(value: str) -> str:
    if re.fullmatch(PLAIN_TEXT_PATTERN, value):
        return value
    if "\x00" in value:
        raise ValueError(f"{shown(value)} contains a NUL character")
    return '"' + value.replace('"', '""') + '"'


def to_boolean(value: str) -> str:
    if re.fullmatch(BOOLEAN_PATTERN, value):
        return value
    raise ValueError(f"{shown(value)} is not a boolean (True or False)")


def to_integer(value: str) -> str:
    # The length test first: int() refuses strings of over 4,300 digits with
    # an error about Python's limits rather than about the value.
    if (
        INTEGER.fullmatch(value)
        and len(value.lstrip("+-0")) <= 10
        and INT4_MIN <= int(value) <= INT4_MAX
    ):
        return value
    raise ValueError(f"{shown(value)} is not an integer")


def to_numeric(value: str) -> str:
    if not re.fullmatch(NUMERIC_PATTERN, value):
        raise ValueError(f"{shown(value)} is not a number")
    # PostgreSQL's numeric would take 1e400 but the snapshot models cast it
    # to double precision, and 1e999999 overflows numeric itself: either way
    # the failure would come later and without a line number.
    as_float = float(value)
    if not math.isfinite(as_float) or (as_float == 0 and Decimal(value) != 0):
        raise ValueError(f"{shown(value)} is out of range for double precision")
    return value


def to_date(value: str) -> str:
    # fromisoformat alone would also accept "20240131"; keep one spelling.
    if re.fullmatch(DATE_PATTERN, value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise ValueError(f"{shown(value)} is not a date (YYYY-MM-DD)")


@dataclass(frozen=True)
class _KindCheck:
    # Matches one valid value that needs no conversion.
    fast_pattern: str
    convert: Callable[[str], str]


KIND_CHECKS: dict[Kind, _KindCheck] = {
    Kind.TEXT: _KindCheck(PLAIN_TEXT_PATTERN, to_text),
    Kind.BOOLEAN: _KindCheck(BOOLEAN_PATTERN, to_boolean),
    Kind.INTEGER: _KindCheck(SHORT_INTEGER_PATTERN, to_integer),
    Kind.NUMERIC: _KindCheck(SHORT_NUMERIC_PATTERN, to_numeric),
    Kind.DATE: _KindCheck(DATE_PATTERN, to_date),
}


def _column_pattern(kind: Kind, nullable: bool) -> re.Pattern[str]:
    one = f"(?:{KIND_CHECKS[kind].fast_pattern})"
    if nullable:
        one += "?"  # an empty cell, NULL
    return re.compile(f"{one}(?:\n{one})*")


COLUMN_PATTERNS = {
    (kind, nullable): _column_pattern(kind, nullable)
    for kind in Kind
    for nullable in (False, True)
}


def check_column(column: Column, values: Sequence[str]) -> ColumnResult:
    if _all_valid(column, values):
        return ColumnResult(list(values), [])
    convert = KIND_CHECKS[column.kind].convert
    converted: list[str] = []
    problems: list[tuple[int, str]] = []
    for index, value in enumerate(values):
        if value == "":
            if not column.nullable:
                problems.append((index, "empty value in a required column"))
            # An unquoted empty field is NULL in COPY's CSV format.
            converted.append("")
            continue
        try:
            converted.append(convert(value))
        except ValueError as error:
            problems.append((index, str(error)))
            converted.append("")
    return ColumnResult(converted, problems)


def _all_valid(column: Column, values: Sequence[str]) -> bool:
    pattern = COLUMN_PATTERNS[(column.kind, column.nullable)]
    joined = "\n".join(values)
    # Any line break beyond the separators came from inside a value.
    if joined.count("\n") != len(values) - 1 or not pattern.fullmatch(joined):
        return False
    if column.kind is Kind.DATE:
        # The pattern takes 2024-13-45; the calendar check runs once per
        # distinct date (a few dozen per month).
        try:
            for value in set(values):
                if value:
                    date.fromisoformat(value)
        except ValueError:
            return False
    return True
