"""Loads checked monthly files into the raw schema, one transaction per month.

A month is read and checked in full before the database is touched; then a
single transaction deletes that as_of's rows from all six tables, COPYs the
new ones and rewrites its raw.month_loads row. Either all of it commits or
none of it does, and other months' rows are never touched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from scripts.ingest.csv_reader import ParsedTable, read_table
from scripts.ingest.errors import IngestError
from scripts.ingest.schema import MONTH_LOADS, TABLES, USERS_TABLE, create_statements
from scripts.manifest import DEFAULT_DATA_DIR, MANIFEST_NAME, MonthEntry, read_manifest
from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

# Serialises concurrent ingests (two `make ingest` at once) on one database;
# any constant works as long as every ingest uses the same one.
ADVISORY_LOCK_KEY = 0x5F1_0ADD


@dataclass(frozen=True)
class MonthLoad:
    month: str
    as_of: date
    loaded_at: datetime
    row_counts: dict[str, int]
    seconds: float


def read_month(entry: MonthEntry) -> list[ParsedTable]:
    """Every table of the month, checked; raises IngestError on bad input."""
    users_table = next(table for table in TABLES if table.name == USERS_TABLE)
    users = read_table(entry.folder / users_table.file_name, users_table, None)
    parsed = [users]
    for table in TABLES:
        if table is not users_table:
            parsed.append(
                read_table(entry.folder / table.file_name, table, users.user_ids)
            )
    return parsed


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        for statement in create_statements():
            conn.execute(statement)


def load_month(conn: psycopg.Connection, entry: MonthEntry) -> MonthLoad:
    """Replace the month's rows in raw.*; `conn` must be in autocommit mode so
    that the transaction below is the only one."""
    started = time.perf_counter()
    parsed = read_month(entry)
    as_of_text = entry.as_of.isoformat()
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        # now() is the transaction's start: the same instant for all tables.
        row = conn.execute("select now()").fetchone()
        assert row is not None
        loaded_at: datetime = row[0]
        for table in TABLES:
            conn.execute(
                sql.SQL("delete from {} where as_of = %s").format(table.identifier()),
                [entry.as_of],
            )
        for table_data in parsed:
            _copy_table(conn, table_data, f",{as_of_text},{loaded_at.isoformat()}\n")
        row_counts = {data.table.name: len(data.lines) for data in parsed}
        conn.execute(
            sql.SQL(
                "insert into {} (as_of, month, loaded_at, row_counts) "
                "values (%s, %s, %s, %s) on conflict (as_of) do update set "
                "month = excluded.month, loaded_at = excluded.loaded_at, "
                "row_counts = excluded.row_counts"
            ).format(MONTH_LOADS),
            [entry.as_of, entry.month, loaded_at, Jsonb(row_counts)],
        )
    seconds = time.perf_counter() - started
    logger.info(
        "%s (as_of %s) committed: %d rows in %.2f s",
        entry.month,
        as_of_text,
        sum(row_counts.values()),
        seconds,
    )
    return MonthLoad(entry.month, entry.as_of, loaded_at, row_counts, seconds)


def _copy_table(conn: psycopg.Connection, data: ParsedTable, line_end: str) -> None:
    started = time.perf_counter()
    table = data.table
    columns = [*table.column_names, "as_of", "loaded_at"]
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        table.identifier(), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    # One join builds the whole payload: far quicker than a write per row.
    payload = line_end.join(data.lines) + line_end
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(payload)
    logger.info(
        "%s: %d rows loaded from %s in %.3f s (read %.3f s, copy %.3f s)",
        table.qualified,
        len(data.lines),
        data.path,
        data.seconds + time.perf_counter() - started,
        data.seconds,
        time.perf_counter() - started,
    )


def ingest(
    settings: PgSettings,
    data_dir: Path = DEFAULT_DATA_DIR,
    month: str | None = None,
) -> list[MonthLoad]:
    """Load every month of the manifest in `data_dir`, or only `month`.

    Months load in manifest order, each in its own transaction: a bad
    month stops the run, leaving the months before it loaded."""
    entries = read_manifest(data_dir)
    if month is not None:
        entries = [entry for entry in entries if entry.month == month]
        if not entries:
            raise IngestError(
                f"month {month!r} is not in {data_dir / MANIFEST_NAME}; "
                f"add a line `{month},YYYY-MM-DD` for it"
            )
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        ensure_schema(conn)
        return [load_month(conn, entry) for entry in entries]
