"""Bad monthly files: the error names file, line and column, and the month is
left exactly as it was.

Every case runs twice against one database holding both course months:
against month_001, which was loaded before (its rows must stay identical,
loaded_at included), and against a month that was never loaded (no row of
its as_of may appear). Month_000 must not change either way.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.ingest import IngestError, ingest
from scripts.settings import PgSettings
from tests.ingest_fixtures import (
    MONTH_000_AS_OF,
    MONTH_001_AS_OF,
    make_data_dir,
    month_fingerprints,
    read_rows,
    set_cell,
    write_rows,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
NEW_AS_OF = "2024-03-31"
# A user_id from the course files and the line it is on in every file.
SECOND_USER = "5575-GNVDE"


@pytest.fixture(scope="module")
def db(make_database) -> PgSettings:
    settings = make_database("ingest_errors")
    ingest(settings)
    return settings


@pytest.fixture(scope="module")
def baseline(db: PgSettings) -> dict[str, dict[str, tuple[int, str | None]]]:
    """Contents of every month as loaded by `db`; no test here may change it,
    since every load in this module must fail."""
    fingerprints = month_fingerprints(db, [MONTH_000_AS_OF, MONTH_001_AS_OF, NEW_AS_OF])
    assert all(count == 0 for count, _ in fingerprints[NEW_AS_OF].values())
    return fingerprints


def drop_column(path: Path, column: str) -> None:
    rows = read_rows(path)
    index = rows[0].index(column)
    write_rows(path, [row[:index] + row[index + 1 :] for row in rows])


def add_column(path: Path, name: str) -> None:
    rows = read_rows(path)
    write_rows(path, [rows[0] + [name]] + [row + ["1"] for row in rows[1:]])


def rename_column(path: Path, old: str, new: str) -> None:
    rows = read_rows(path)
    rows[0][rows[0].index(old)] = new
    write_rows(path, rows)


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


@dataclass(frozen=True)
class BadInput:
    file: str
    # Applied to the month folder's copy of `file`.
    damage: Callable[[Path], None]
    # Expected in the message after "<file>": ":line column 'x'" and a reason.
    where: str
    reason: str


BAD_INPUTS = {
    "missing file": BadInput(
        "labels.csv", lambda path: path.unlink(), "", "file not found"
    ),
    "missing column": BadInput(
        "users.csv",
        lambda path: drop_column(path, "has_family"),
        ":1 column 'has_family'",
        "missing from the header",
    ),
    "extra column": BadInput(
        "payments_agg_90d.csv",
        lambda path: add_column(path, "late_fees"),
        ":1 column 'late_fees'",
        "not a column of raw.payments_agg_90d",
    ),
    "renamed column": BadInput(
        "labels.csv",
        lambda path: rename_column(path, "churn_label", "churned"),
        ":1 column 'churn",  # both the new name and the missing one
        "churned",
    ),
    "text in an integer column": BadInput(
        "subscriptions.csv",
        lambda path: set_cell(path, 5, "months_active", "abc"),
        ":5 column 'months_active'",
        "'abc' is not an integer",
    ),
    "Maybe as a boolean": BadInput(
        "labels.csv",
        lambda path: set_cell(path, 100, "churn_label", "Maybe"),
        ":100 column 'churn_label'",
        "'Maybe' is not a boolean",
    ),
    "impossible date": BadInput(
        "users.csv",
        lambda path: set_cell(path, 7044, "signup_date", "2024-13-45"),
        ":7044 column 'signup_date'",
        "'2024-13-45' is not a date",
    ),
    "empty required cell": BadInput(
        "usage_agg_30d.csv",
        lambda path: set_cell(path, 3, "watch_hours_30d", ""),
        ":3 column 'watch_hours_30d'",
        "empty value in a required column",
    ),
    "integer out of range": BadInput(
        "payments_agg_90d.csv",
        lambda path: set_cell(path, 4, "failed_payments_90d", "99999999999"),
        ":4 column 'failed_payments_90d'",
        "is not an integer",
    ),
    "duplicate user_id": BadInput(
        "support_agg_90d.csv",
        lambda path: set_cell(path, 10, "user_id", SECOND_USER),
        ":10 column 'user_id'",
        f"duplicate user_id '{SECOND_USER}' (also on line 3)",
    ),
    "user_id not in users": BadInput(
        "payments_agg_90d.csv",
        lambda path: set_cell(path, 20, "user_id", "0000-NOBODY"),
        ":20 column 'user_id'",
        "'0000-NOBODY' is not in this month's users.csv",
    ),
    "empty file": BadInput(
        "subscriptions.csv",
        lambda path: path.write_bytes(b""),
        ":1",
        "empty file",
    ),
    "header only": BadInput(
        "labels.csv",
        lambda path: edit_lines(path, lambda lines: lines[:1]),
        ":2",
        "no data lines after the header",
    ),
    "short line": BadInput(
        "usage_agg_30d.csv",
        lambda path: edit_lines(path, lambda lines: lines[:49] + ["1234-ABCDE,1"]),
        ":50",
        "expected 6 fields, found 2",
    ),
    "blank line inside the data": BadInput(
        "users.csv",
        lambda path: edit_lines(path, lambda lines: lines[:5] + [""] + lines[5:]),
        ":6",
        "blank line between data lines",
    ),
    "NUL character in text": BadInput(
        "users.csv",
        lambda path: set_cell(path, 10, "user_gender", "Fe\x00male"),
        ":10 column 'user_gender'",
        "'Fe\\x00male' contains a NUL character",
    ),
    # A quoted cell with a line break once passed the column-at-once check
    # and split the COPY row: a database error without file or line.
    "line break inside a number": BadInput(
        "subscriptions.csv",
        lambda path: set_cell(path, 2, "monthly_fee", "29.85\n1"),
        ":2 column 'monthly_fee'",
        "'29.85\\n1' is not a number",
    ),
    "non-ASCII digits in an integer": BadInput(
        "payments_agg_90d.csv",
        lambda path: set_cell(path, 6, "failed_payments_90d", "\u0661\u0662"),
        ":6 column 'failed_payments_90d'",
        "is not an integer",
    ),
    "full-width digits in a number": BadInput(
        "usage_agg_30d.csv",
        lambda path: set_cell(path, 7, "avg_session_mins_7d", "\uff11\uff12"),
        ":7 column 'avg_session_mins_7d'",
        "is not a number",
    ),
    "number beyond double precision": BadInput(
        "usage_agg_30d.csv",
        lambda path: set_cell(path, 8, "watch_hours_30d", "1e400"),
        ":8 column 'watch_hours_30d'",
        "'1e400' is out of range for double precision",
    ),
    "number overflowing numeric": BadInput(
        "support_agg_90d.csv",
        lambda path: set_cell(path, 9, "ticket_avg_resolution_hrs_90d", "1e-999999"),
        ":9 column 'ticket_avg_resolution_hrs_90d'",
        "'1e-999999' is out of range",
    ),
    "runaway value": BadInput(
        "usage_agg_30d.csv",
        lambda path: set_cell(path, 11, "skips_7d", "7" * 100_000),
        ":11 column 'skips_7d'",
        "'7777777777777777777777777777777777777777'... (100000 characters) is not",
    ),
    "unclosed quote": BadInput(
        "labels.csv",
        lambda path: edit_lines(
            path, lambda lines: lines[:4] + [lines[4].replace(",", ',"')] + lines[5:]
        ),
        ":5",
        "a quoted value opened on this line is not closed",
    ),
    "not UTF-8": BadInput(
        "users.csv",
        lambda path: path.write_bytes(
            path.read_bytes().replace(b"Female", b"F\xe9male", 3)
        ),
        ":2",
        "not UTF-8 text",
    ),
}


@pytest.fixture(params=["loaded before", "never loaded"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(month folder name, as_of) of the month the bad file goes into."""
    if request.param == "loaded before":
        return "month_001", MONTH_001_AS_OF
    return "month_002", NEW_AS_OF


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_reported_and_the_month_left_as_it_was(
    db: PgSettings,
    baseline: dict[str, dict[str, tuple[int, str | None]]],
    tmp_path: Path,
    target: tuple[str, str],
    case: BadInput,
) -> None:
    month, as_of = target
    data_dir = make_data_dir(
        tmp_path,
        {"month_000": ("month_000", MONTH_000_AS_OF), month: ("month_001", as_of)},
    )
    bad_file = data_dir / month / case.file
    case.damage(bad_file)

    with pytest.raises(IngestError) as raised:
        ingest(db, data_dir, month=month)

    message = str(raised.value)
    assert f"{bad_file}{case.where}" in message
    assert case.reason in message
    assert month_fingerprints(db, [MONTH_000_AS_OF, as_of]) == {
        day: baseline[day] for day in (MONTH_000_AS_OF, as_of)
    }


def test_renamed_column_names_both_names(db: PgSettings, tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path, {"month_001": ("month_001", MONTH_001_AS_OF)})
    labels = data_dir / "month_001" / "labels.csv"
    rename_column(labels, "churn_label", "churned")
    with pytest.raises(IngestError) as raised:
        ingest(db, data_dir)
    assert {str(problem) for problem in raised.value.problems} == {
        f"{labels}:1 column 'churned': not a column of raw.labels "
        "(expected user_id, churn_label)",
        f"{labels}:1 column 'churn_label': missing from the header of raw.labels",
    }


def test_every_bad_value_of_a_file_is_listed_by_line(
    db: PgSettings, tmp_path: Path
) -> None:
    data_dir = make_data_dir(tmp_path, {"month_001": ("month_001", MONTH_001_AS_OF)})
    usage = data_dir / "month_001" / "usage_agg_30d.csv"
    set_cell(usage, 9, "skips_7d", "many")
    set_cell(usage, 4, "watch_hours_30d", "1,5")
    with pytest.raises(IngestError) as raised:
        ingest(db, data_dir)
    assert [(p.line, p.column) for p in raised.value.problems] == [
        (4, "watch_hours_30d"),
        (9, "skips_7d"),
    ]


def test_unknown_month_is_an_error(db: PgSettings) -> None:
    with pytest.raises(IngestError, match="month 'month_009' is not in"):
        ingest(db, month="month_009")


def test_cli_prints_the_error_without_traceback(db: PgSettings, tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path, {"month_001": ("month_001", MONTH_001_AS_OF)})
    labels = data_dir / "month_001" / "labels.csv"
    set_cell(labels, 100, "churn_label", "Maybe")
    result = subprocess.run(
        [sys.executable, "-m", "scripts.ingest", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **db.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"{labels}:100 column 'churn_label': 'Maybe' is not a boolean" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
