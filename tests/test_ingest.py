"""The monthly ingest against a real PostgreSQL: what lands in raw.*.

One database for the module, loaded once with both course months; every
test either reloads those months (which must change nothing) or loads its
own edited copy under an as_of of its own, so the tests do not disturb
each other.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from scripts.ingest import ingest
from scripts.ingest.schema import TABLES
from scripts.settings import PgSettings
from tests.ingest_fixtures import (
    MONTH_000_AS_OF,
    MONTH_001_AS_OF,
    REPO_DATA,
    ROWS_PER_MONTH,
    make_data_dir,
    month_fingerprint,
    month_fingerprints,
    read_rows,
    set_cell,
    write_rows,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
AS_OF_BY_MONTH = {"month_000": MONTH_000_AS_OF, "month_001": MONTH_001_AS_OF}


@pytest.fixture(scope="module")
def db(make_database) -> PgSettings:
    settings = make_database("ingest")
    loads = ingest(settings)
    assert [load.month for load in loads] == ["month_000", "month_001"]
    return settings


def query(
    settings: PgSettings, statement: str | sql.Composable, params: list | None = None
) -> list:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(statement, params).fetchall()


def test_every_table_has_7043_rows_per_as_of(db: PgSettings) -> None:
    for table in TABLES:
        counts = query(
            db,
            f"select as_of::text, count(*) from {table.qualified} "
            "group by as_of order by as_of",
        )
        assert counts == [
            (MONTH_000_AS_OF, ROWS_PER_MONTH),
            (MONTH_001_AS_OF, ROWS_PER_MONTH),
        ], table.name


def test_month_loads_records_each_month_with_one_loaded_at(db: PgSettings) -> None:
    loads = query(
        db,
        "select as_of::text, month, loaded_at, row_counts from raw.month_loads "
        "order by as_of",
    )
    expected_counts = {table.name: ROWS_PER_MONTH for table in TABLES}
    assert [(load[0], load[1], load[3]) for load in loads] == [
        (MONTH_000_AS_OF, "month_000", expected_counts),
        (MONTH_001_AS_OF, "month_001", expected_counts),
    ]
    for as_of, _month, loaded_at, _counts in loads:
        stamps = set()
        for table in TABLES:
            stamps |= {
                row[0]
                for row in query(
                    db,
                    f"select distinct loaded_at from {table.qualified} "
                    "where as_of = %s",
                    [as_of],
                )
            }
        assert stamps == {loaded_at}, as_of


@pytest.mark.parametrize("month", ["month_000", "month_001"])
def test_every_value_matches_the_csv(db: PgSettings, month: str) -> None:
    """Full round trip: each cell as PostgreSQL prints it equals the file's
    cell (booleans in lower case, empty plan cells as NULL)."""
    for table in TABLES:
        header, *lines = read_rows(REPO_DATA / month / table.file_name)
        expected = sorted(
            tuple(_as_postgres_text(value) for value in line) for line in lines
        )
        select = sql.SQL("select {} from {} where as_of = %s order by user_id").format(
            sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(name)) for name in header
            ),
            table.identifier(),
        )
        with psycopg.connect(db.conninfo()) as conn:
            actual = conn.execute(select, [AS_OF_BY_MONTH[month]]).fetchall()
        assert sorted(actual) == expected, table.name


def _as_postgres_text(value: str) -> str | None:
    if value == "":
        return None
    return {"True": "true", "False": "false"}.get(value, value)


def test_types_follow_the_course_schema(db: PgSettings) -> None:
    row = query(
        db,
        "select u.signup_date::text, u.user_is_senior, s.months_active, "
        "s.monthly_fee, s.plan_stream_tv, l.churn_label "
        "from raw.users u join raw.subscriptions s using (user_id, as_of) "
        "join raw.labels l using (user_id, as_of) "
        "where user_id = '7590-VHVEG' and as_of = %s",
        [MONTH_000_AS_OF],
    )
    assert row == [("2022-02-05", False, 1, Decimal("29.85"), False, False)]
    types = query(
        db,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'subscriptions' "
        "order by ordinal_position",
    )
    assert types == [
        ("user_id", "text"),
        ("months_active", "integer"),
        ("plan_stream_tv", "boolean"),
        ("plan_stream_movies", "boolean"),
        ("contract_type", "text"),
        ("paperless_billing", "boolean"),
        ("monthly_fee", "numeric"),
        ("total_paid", "numeric"),
        ("net_service", "text"),
        ("as_of", "date"),
        ("loaded_at", "timestamp with time zone"),
    ]


@pytest.mark.parametrize("as_of", [MONTH_000_AS_OF, MONTH_001_AS_OF])
@pytest.mark.parametrize("column", ["plan_stream_tv", "plan_stream_movies"])
def test_empty_plan_cells_are_null_exactly_without_net_service(
    db: PgSettings, as_of: str, column: str
) -> None:
    counts = query(
        db,
        sql.SQL(
            "select count(*) filter (where {col} is null), "
            "count(*) filter (where {col} is null and net_service = 'No'), "
            "count(*) filter (where net_service = 'No') "
            "from raw.subscriptions where as_of = %s"
        ).format(col=sql.Identifier(column)),
        [as_of],
    )
    assert counts == [(1526, 1526, 1526)]


def test_loading_twice_changes_nothing_but_loaded_at(db: PgSettings) -> None:
    months = list(AS_OF_BY_MONTH.values())
    before = month_fingerprints(db, months, with_loaded_at=False)
    ingest(db)
    assert month_fingerprints(db, months, with_loaded_at=False) == before
    for table in TABLES:
        rows, distinct = query(
            db,
            f"select count(*), count(distinct (user_id, as_of)) from {table.qualified}",
        )[0]
        assert rows == distinct == 2 * ROWS_PER_MONTH


def test_loading_month_001_leaves_month_000_untouched(db: PgSettings) -> None:
    before = month_fingerprint(db, MONTH_000_AS_OF)
    ingest(db, month="month_001")
    assert month_fingerprint(db, MONTH_000_AS_OF) == before
    # Each month keeps its own labels: they differ between the two files.
    changed = query(
        db,
        "select count(*) from raw.labels a join raw.labels b using (user_id) "
        "where a.as_of = %s and b.as_of = %s and a.churn_label <> b.churn_label",
        [MONTH_000_AS_OF, MONTH_001_AS_OF],
    )[0][0]
    assert changed > 0


def test_bom_and_crlf_files_load_like_the_originals(
    db: PgSettings, tmp_path: Path
) -> None:
    as_of = "2030-01-31"
    data_dir = make_data_dir(tmp_path, {"month_bom": ("month_001", as_of)})
    for path in (data_dir / "month_bom").glob("*.csv"):
        text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    ingest(db, data_dir)
    ours = month_fingerprint(db, as_of, with_loaded_at=False)
    original = month_fingerprint(db, MONTH_001_AS_OF, with_loaded_at=False)
    # Same rows; only the as_of inside each row (and so the md5) differs.
    assert {name: count for name, (count, _) in ours.items()} == {
        name: count for name, (count, _) in original.items()
    }
    assert query(
        db,
        "select count(*) from raw.subscriptions a join raw.subscriptions b "
        "using (user_id) where a.as_of = %s and b.as_of = %s "
        "and row(a.months_active, a.plan_stream_tv, a.total_paid, a.net_service) "
        "is not distinct from "
        "row(b.months_active, b.plan_stream_tv, b.total_paid, b.net_service)",
        [as_of, MONTH_001_AS_OF],
    ) == [(ROWS_PER_MONTH,)]


def test_columns_in_another_order_and_quoted_text_load(
    db: PgSettings, tmp_path: Path
) -> None:
    as_of = "2030-02-28"
    data_dir = make_data_dir(tmp_path, {"month_odd": ("month_000", as_of)})
    subscriptions = data_dir / "month_odd" / "subscriptions.csv"
    set_cell(subscriptions, 2, "contract_type", 'Month-to-month, "promo"')
    set_cell(subscriptions, 3, "paperless_billing", "FALSE")
    # A quoted line break is text like any other, not the end of a COPY row
    # (net_service has no other value that needs quoting).
    set_cell(subscriptions, 3, "net_service", "DSL\nlite")
    rows = read_rows(subscriptions)
    write_rows(subscriptions, [list(reversed(row)) for row in rows])
    ingest(db, data_dir)
    assert query(
        db,
        "select user_id, contract_type, paperless_billing, monthly_fee, "
        "net_service from raw.subscriptions where as_of = %s and user_id in "
        "('7590-VHVEG', '5575-GNVDE') order by user_id",
        [as_of],
    ) == [
        ("5575-GNVDE", "One year", False, Decimal("56.95"), "DSL\nlite"),
        ("7590-VHVEG", 'Month-to-month, "promo"', True, Decimal("29.85"), "DSL"),
    ]


def test_cli_logs_one_line_per_table_and_exits_0(db: PgSettings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.ingest", "--month", "month_000"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **db.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    table_lines = [
        line for line in result.stderr.splitlines() if " rows loaded " in line
    ]
    assert len(table_lines) == len(TABLES)
    for table, line in zip(TABLES, table_lines, strict=True):
        assert f"{table.qualified}: {ROWS_PER_MONTH} rows loaded" in line
        assert " s (read " in line
