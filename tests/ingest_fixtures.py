"""Helpers for the ingest tests: throwaway copies of data/ and table snapshots.

Kept out of conftest.py because only the ingest tests use them.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from scripts.ingest.schema import TABLES
from scripts.settings import PgSettings

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
ROWS_PER_MONTH = 7043
MONTH_000_AS_OF = "2024-01-31"
MONTH_001_AS_OF = "2024-02-29"


def make_data_dir(root: Path, months: dict[str, tuple[str, str]]) -> Path:
    """A data folder under `root` with a manifest: {new folder name:
    (repository month it copies, as_of)}."""
    data_dir = root / "data"
    data_dir.mkdir()
    lines = ["month,as_of"]
    for name, (source, as_of) in months.items():
        shutil.copytree(REPO_DATA / source, data_dir / name)
        lines.append(f"{name},{as_of}")
    (data_dir / "manifest.csv").write_text("\n".join(lines) + "\n")
    return data_dir


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def set_cell(path: Path, line: int, column: str, value: str) -> None:
    """Overwrite one value; `line` counts like an editor (header = 1)."""
    rows = read_rows(path)
    rows[line - 1][rows[0].index(column)] = value
    write_rows(path, rows)


def month_fingerprints(
    settings: PgSettings, as_ofs: list[str], with_loaded_at: bool = True
) -> dict[str, dict[str, tuple[int, str | None]]]:
    """Per as_of: (row count, md5 of every row in user_id order) per raw table,
    plus its raw.month_loads row. Equal fingerprints mean equal contents."""
    result: dict[str, dict[str, tuple[int, str | None]]] = {
        as_of: {} for as_of in as_ofs
    }
    with psycopg.connect(settings.conninfo()) as conn:
        for table in TABLES:
            columns = [*table.column_names, "as_of"]
            if with_loaded_at:
                columns.append("loaded_at")
            query = sql.SQL(
                "select as_of::text, count(*), "
                "md5(string_agg(row({})::text, '|' order by user_id)) "
                "from {} where as_of = any(%s::date[]) group by as_of"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), table.identifier()
            )
            found = {row[0]: (row[1], row[2]) for row in conn.execute(query, [as_ofs])}
            for as_of in as_ofs:
                result[as_of][table.name] = found.get(as_of, (0, None))
        loads = conn.execute(
            "select as_of::text, month, loaded_at, row_counts from raw.month_loads "
            "where as_of = any(%s::date[])",
            [as_ofs],
        ).fetchall()
        for as_of, month, loaded_at, row_counts in loads:
            load = (month, loaded_at if with_loaded_at else None, row_counts)
            result[as_of]["month_loads"] = (1, repr(load))
    return result


def month_fingerprint(
    settings: PgSettings, as_of: str, with_loaded_at: bool = True
) -> dict[str, tuple[int, str | None]]:
    return month_fingerprints(settings, [as_of], with_loaded_at)[as_of]
