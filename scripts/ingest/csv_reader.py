"""Reads one month's CSV file and checks every line before anything is loaded.

Decisions about input the course files never contain:
- A UTF-8 BOM and CRLF line ends are accepted (spreadsheet exports).
- The header must name exactly the table's columns; their order may differ
  (columns are matched by name), but a missing, extra, renamed or repeated
  column is an error.
- A file with no header at all, or with a header and no data lines, is an
  error: loading it would silently empty that month's table.
- Blank lines at the end of a file are ignored; a blank line followed by
  more data is an error (a sign of a truncated or spliced file).
- An empty cell is NULL in a nullable column and an error elsewhere.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scripts.ingest.errors import IngestError, Problem
from scripts.ingest.schema import KEY_COLUMN, Table
from scripts.ingest.values import check_column

# Enough to fix a file in one go without flooding the terminal.
MAX_PROBLEMS = 20


class _CsvReader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


@dataclass(frozen=True)
class ParsedTable:
    table: Table
    path: Path
    # Each row as COPY CSV text in table column order, without as_of and
    # loaded_at (known only inside the load transaction).
    lines: list[str]
    user_ids: frozenset[str]
    seconds: float


class _Problems:
    """Collects what is wrong with one file, reported sorted by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[Problem] = []

    def add(self, line: int | None, column: str | None, message: str) -> None:
        self.items.append(Problem(self.path, line, column, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        ordered = sorted(self.items, key=lambda problem: problem.line or 0)
        shown = ordered[:MAX_PROBLEMS]
        if len(ordered) > MAX_PROBLEMS:
            hidden = len(ordered) - MAX_PROBLEMS
            shown.append(Problem(self.path, None, None, f"... and {hidden} more"))
        raise IngestError(shown)


def read_table(
    path: Path, table: Table, known_users: frozenset[str] | None
) -> ParsedTable:
    """Parse and check `path`; `known_users` (None for users.csv itself) are
    the user_ids every other file of the month may mention."""
    started = time.perf_counter()
    if not path.is_file():
        raise IngestError(
            [Problem(path, None, None, f"file not found ({table.qualified})")]
        )
    problems = _Problems(path)
    try:
        # utf-8-sig drops a BOM; newline="" lets csv handle CRLF itself.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines, user_lines = _read_rows(
                csv.reader(handle, strict=True), table, problems
            )
    except UnicodeDecodeError:
        problems.add(*_first_undecodable(path))
    except OSError as error:
        problems.add(None, None, f"cannot read the file ({error.strerror})")
    problems.raise_if_any()
    if known_users is not None:
        _check_known_users(user_lines, known_users, problems)
    problems.raise_if_any()
    return ParsedTable(
        table=table,
        path=path,
        lines=lines,
        user_ids=frozenset(user_lines),
        seconds=time.perf_counter() - started,
    )


def _read_rows(
    reader: _CsvReader, table: Table, problems: _Problems
) -> tuple[list[str], dict[str, int]]:
    """COPY lines and {user_id: line number}, checking every value."""
    header = next(_records(reader, problems), None)
    if header is None:
        problems.add(1, None, "empty file: expected a header line")
        return [], {}
    positions = _check_header(header[1], table, problems)
    if positions is None:
        return [], {}

    width = len(header[1])
    records: list[list[str]] = []
    line_numbers: list[int] = []
    blank_line: int | None = None
    for line_number, record in _records(reader, problems):
        if not record:
            blank_line = blank_line or line_number
            continue
        if blank_line is not None:
            problems.add(blank_line, None, "blank line between data lines")
            blank_line = None
        if len(record) != width:
            problems.add(
                line_number, None, f"expected {width} fields, found {len(record)}"
            )
            continue
        records.append(record)
        line_numbers.append(line_number)
    if not records:
        if not problems.items:
            problems.add(2, None, "no data lines after the header")
        return [], {}

    # Checked a column at a time: see values.py for why that is fast.
    file_columns = list(zip(*records, strict=True))
    checked = []
    for column, position in zip(table.columns, positions, strict=True):
        result = check_column(column, file_columns[position])
        for index, message in result.problems:
            problems.add(line_numbers[index], column.name, message)
        checked.append(result.values)
    user_lines = _user_lines(file_columns[positions[0]], line_numbers, problems)
    return [",".join(row) for row in zip(*checked, strict=True)], user_lines


def _user_lines(
    user_ids: tuple[str, ...], line_numbers: list[int], problems: _Problems
) -> dict[str, int]:
    user_lines = dict(zip(user_ids, line_numbers, strict=True))
    if len(user_lines) != len(user_ids):
        first_seen: dict[str, int] = {}
        for user_id, line_number in zip(user_ids, line_numbers, strict=True):
            first = first_seen.setdefault(user_id, line_number)
            if first != line_number:
                problems.add(
                    line_number,
                    KEY_COLUMN,
                    f"duplicate user_id {user_id!r} (also on line {first})",
                )
        return first_seen
    return user_lines


def _records(
    reader: _CsvReader, problems: _Problems
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) pairs; the number is the line the record starts
    on, which an editor shows even when a quoted value spans lines."""
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if reader.line_num > start:
                # An unclosed quote runs on to the end of the file or to the
                # field size limit; where it opened is the line to fix.
                message = (
                    f"malformed CSV: a quoted value opened on this line is not "
                    f"closed ({error} on line {reader.line_num})"
                )
                problems.add(start, None, message)
            else:
                problems.add(reader.line_num, None, f"malformed CSV ({error})")
            return
        yield start, record


def _check_header(
    header: list[str], table: Table, problems: _Problems
) -> list[int] | None:
    """Position of each table column in the file, or None if they don't match."""
    expected = table.column_names
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.add(1, name, "appears twice in the header")
        seen.add(name)
        if name not in expected:
            problems.add(
                1,
                name,
                f"not a column of {table.qualified} (expected {', '.join(expected)})",
            )
    for name in expected:
        if name not in seen:
            problems.add(1, name, f"missing from the header of {table.qualified}")
    if problems.items:
        return None
    return [header.index(name) for name in expected]


def _check_known_users(
    user_lines: dict[str, int], known_users: frozenset[str], problems: _Problems
) -> None:
    for user_id in user_lines.keys() - known_users:
        problems.add(
            user_lines[user_id],
            KEY_COLUMN,
            f"user_id {user_id!r} is not in this month's users.csv",
        )


def _first_undecodable(path: Path) -> tuple[int, None, str]:
    # The text reader decodes in large chunks, so its position says little;
    # find the first bad byte in the raw file to name the right line.
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return line, None, f"not UTF-8 text (byte {data[error.start]:#04x})"
    return 1, None, "not UTF-8 text"
