"""Checks a CSV column against its type and returns it ready for COPY (CSV).

PostgreSQL would reject most bad values itself, but only in the middle of a
COPY and without the file's line number; checking here lets the error name
the file, line and column, and keeps the server's looser spellings ("yes",
"1", " 12 ") out of the raw layer.

Columns are checked whole: one regular expression over the column joined by
newlines settles the usual all-valid case in C, and only a column that fails
it is walked value by value to say which lines are wrong. This keeps a month
(250,000 cells) to a few hundredths of a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from scripts.ingest.schema import Column, Kind

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
# The course files write True/False; any letter case is accepted because a
# spreadsheet round trip turns them into TRUE/FALSE. Nothing else counts as
# a boolean (no 1/0, yes/no): those would hide a shifted column. PostgreSQL
# reads true/false in any case, so valid values pass through unchanged.
BOOLEAN_PATTERN = r"(?i:true|false)"
# Nine digits always fit in an int4; longer ones take the exact check.
SHORT_INTEGER_PATTERN = r"[+-]?\d{1,9}"
INTEGER = re.compile(r"[+-]?\d+")
NUMERIC_PATTERN = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
# Text without these needs no CSV quoting in the COPY stream.
PLAIN_TEXT_PATTERN = r'[^,"\r\n]+'


@dataclass(frozen=True)
class ColumnResult:
    values: list[str]
    # (index into the column, what is wrong), in column order.
    problems: list[tuple[int, str]]


def to_text(value: str) -> str:
    if re.fullmatch(PLAIN_TEXT_PATTERN, value):
        return value
    return '"' + value.replace('"', '""') + '"'


def to_boolean(value: str) -> str:
    if re.fullmatch(BOOLEAN_PATTERN, value):
        return value
    raise ValueError(f"{value!r} is not a boolean (True or False)")


def to_integer(value: str) -> str:
    if INTEGER.fullmatch(value) and INT4_MIN <= int(value) <= INT4_MAX:
        return value
    raise ValueError(f"{value!r} is not an integer")


def to_numeric(value: str) -> str:
    if re.fullmatch(NUMERIC_PATTERN, value):
        return value
    raise ValueError(f"{value!r} is not a number")


def to_date(value: str) -> str:
    # fromisoformat alone would also accept "20240131"; keep one spelling.
    if re.fullmatch(DATE_PATTERN, value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


@dataclass(frozen=True)
class _KindCheck:
    # Matches one valid value that needs no conversion.
    fast_pattern: str
    convert: Callable[[str], str]


KIND_CHECKS: dict[Kind, _KindCheck] = {
    Kind.TEXT: _KindCheck(PLAIN_TEXT_PATTERN, to_text),
    Kind.BOOLEAN: _KindCheck(BOOLEAN_PATTERN, to_boolean),
    Kind.INTEGER: _KindCheck(SHORT_INTEGER_PATTERN, to_integer),
    Kind.NUMERIC: _KindCheck(NUMERIC_PATTERN, to_numeric),
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
    if not pattern.fullmatch("\n".join(values)):
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
