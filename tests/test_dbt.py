"""The dbt project against a real PostgreSQL, driven the way `make dbt` does:
plain `dbt` from dbt_project/, connection from the PG* variables.

One scenario per database, run once per module and observed along the way
(dbt builds take seconds each), then asserted on by the tests below:

- history: month_000 is ingested and built, then month_001 incrementally,
  then a full refresh; then month_001 is re-ingested without one user and
  with one changed fee, and built incrementally again;
- corrupted: month_000 with a negative monthly_fee is ingested and built.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scripts.dbt_gate import DbtGateError, require_green_build
from scripts.ingest import ingest
from scripts.settings import PgSettings

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIR = REPO_ROOT / "dbt_project"
DATA_DIR = REPO_ROOT / "data"
DBT = Path(sys.executable).with_name("dbt")

MARTS = (
    "users_snapshots",
    "subscriptions_profile_snapshots",
    "usage_agg_30d_snapshots",
    "payments_agg_90d_snapshots",
    "support_agg_90d_snapshots",
    "labels_snapshots",
)
USERS_PER_MONTH = 7043
DROPPED_USER = "7590-VHVEG"
REPRICED_USER = "5575-GNVDE"
# The name dbt gives the range test on staging's monthly_fee.
FEE_TEST = "value_between_stg_raw__subscriptions_monthly_fee__0"

# The contract Feast maps (helper C): any change here is a change for Feast.
EXPECTED_TYPES = {
    "users_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "signup_date": "date",
        "user_gender": "text",
        "user_is_senior": "boolean",
        "has_family": "boolean",
        "has_dependents": "boolean",
        "loaded_at": "timestamp with time zone",
    },
    "subscriptions_profile_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "months_active": "integer",
        "monthly_fee": "double precision",
        "paperless_billing": "boolean",
        "plan_stream_tv": "boolean",
        "plan_stream_movies": "boolean",
        "net_service": "text",
        "contract_type": "text",
        "total_paid": "double precision",
        "loaded_at": "timestamp with time zone",
    },
    "usage_agg_30d_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "watch_hours_30d": "double precision",
        "avg_session_mins_7d": "double precision",
        "unique_devices_30d": "integer",
        "skips_7d": "integer",
        "rebuffer_events_7d": "integer",
        "loaded_at": "timestamp with time zone",
    },
    "payments_agg_90d_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "failed_payments_90d": "integer",
        "loaded_at": "timestamp with time zone",
    },
    "support_agg_90d_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "support_tickets_90d": "integer",
        "ticket_avg_resolution_hrs_90d": "double precision",
        "loaded_at": "timestamp with time zone",
    },
    "labels_snapshots": {
        "user_id": "text",
        "as_of": "timestamp with time zone",
        "churn_label": "boolean",
        "loaded_at": "timestamp with time zone",
    },
}


@dataclass
class DbtRun:
    returncode: int
    output: str
    results: list[dict[str, Any]]

    def statuses(self, status: str) -> set[str]:
        return {
            result["unique_id"].split(".")[2]
            for result in self.results
            if result["status"] == status
        }

    def rows_inserted(self) -> dict[str, int]:
        """Rows each snapshot model inserted, from dbt's adapter response."""
        inserted = {}
        for result in self.results:
            name = result["unique_id"].split(".")[-1]
            if result["unique_id"].startswith("model.") and name in MARTS:
                inserted[name] = result["adapter_response"]["rows_affected"]
        return inserted


class DbtProject:
    """`dbt` run from dbt_project/ as a user would, against one database.

    Output goes to a private target path so the tests neither clobber nor
    reuse a developer's dbt_project/target."""

    def __init__(self, settings: PgSettings, work_dir: Path) -> None:
        self.settings = settings
        self.target_path = work_dir / "target"
        self.log_path = work_dir / "logs"

    def run(self, *args: str) -> DbtRun:
        env = {
            **os.environ,
            **self.settings.as_env(),
            # A session zone far from UTC: as_of must still be midnight UTC,
            # which only holds if the models never rely on the session zone.
            "PGTZ": "America/New_York",
        }
        completed = subprocess.run(
            [
                str(DBT),
                *args,
                "--no-use-colors",
                "--target-path",
                str(self.target_path),
                "--log-path",
                str(self.log_path),
            ],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        results_file = self.target_path / "run_results.json"
        results = (
            json.loads(results_file.read_text())["results"]
            if results_file.exists()
            else []
        )
        results_file.unlink(missing_ok=True)
        return DbtRun(
            completed.returncode, completed.stdout + completed.stderr, results
        )


def gate_outcome(settings: PgSettings) -> str | None:
    """None when the gate is open, else the reason it gives."""
    try:
        require_green_build(settings)
    except DbtGateError as error:
        return str(error)
    return None


def table_rows(settings: PgSettings) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(settings.conninfo()) as conn:
        return {
            mart: conn.execute(
                f"select * from features.{mart} order by user_id, as_of"
            ).fetchall()
            for mart in MARTS
        }


def month_row_versions(settings: PgSettings, as_of: str) -> dict[str, set[str]]:
    """xmin of every row of one month: unchanged xmins mean dbt left the
    rows alone, new ones mean it rewrote them."""
    with psycopg.connect(settings.conninfo()) as conn:
        return {
            mart: {
                row[0]
                for row in conn.execute(
                    f"select xmin::text from features.{mart} "
                    "where as_of = %s::date::timestamp at time zone 'utc'",
                    [as_of],
                )
            }
            for mart in MARTS
        }


def copy_month(tmp_path: Path, month: str, as_of: str) -> Path:
    """A data folder holding only `month`, ready to be edited."""
    data_dir = tmp_path / "data"
    shutil.copytree(DATA_DIR / month, data_dir / month)
    (data_dir / "manifest.csv").write_text(f"month,as_of\n{month},{as_of}\n")
    return data_dir


def edit_csv(
    path: Path, edit: Callable[[dict[str, str]], dict[str, str] | None]
) -> None:
    """Rewrite a CSV row by row; `edit` returns the new row, or None to drop it."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fieldnames = list(reader.fieldnames or [])
        rows = [edited for row in reader if (edited := edit(row)) is not None]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class History:
    settings: PgSettings
    gate_before_any_build: str | None = None
    first_build: DbtRun | None = None
    second_build: DbtRun | None = None
    gate_after_second_build: str | None = None
    gate_after_second_ingest: str | None = None
    full_refresh: DbtRun | None = None
    reload_build: DbtRun | None = None
    january_after_first: dict[str, set[str]] = field(default_factory=dict)
    january_after_second: dict[str, set[str]] = field(default_factory=dict)
    january_before_reload: dict[str, set[str]] = field(default_factory=dict)
    january_after_reload: dict[str, set[str]] = field(default_factory=dict)
    incremental_rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    full_refresh_rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    reloaded_rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def history(make_database, tmp_path_factory) -> History:
    settings = make_database("dbt")
    dbt = DbtProject(settings, tmp_path_factory.mktemp("dbt_history"))
    seen = History(settings)

    ingest(settings, DATA_DIR, "month_000")
    seen.gate_before_any_build = gate_outcome(settings)
    seen.first_build = dbt.run("build")
    seen.january_after_first = month_row_versions(settings, "2024-01-31")

    ingest(settings, DATA_DIR, "month_001")
    seen.gate_after_second_ingest = gate_outcome(settings)
    seen.second_build = dbt.run("build")
    seen.gate_after_second_build = gate_outcome(settings)
    seen.january_after_second = month_row_versions(settings, "2024-01-31")
    seen.incremental_rows = table_rows(settings)

    seen.full_refresh = dbt.run("build", "--full-refresh")
    seen.full_refresh_rows = table_rows(settings)
    seen.january_before_reload = month_row_versions(settings, "2024-01-31")

    reload_dir = copy_month(
        tmp_path_factory.mktemp("reload"), "month_001", "2024-02-29"
    )
    for csv_path in (reload_dir / "month_001").glob("*.csv"):
        edit_csv(csv_path, lambda row: None if row["user_id"] == DROPPED_USER else row)
    edit_csv(
        reload_dir / "month_001" / "subscriptions.csv",
        lambda row: (
            {**row, "monthly_fee": "57.95"} if row["user_id"] == REPRICED_USER else row
        ),
    )
    ingest(settings, reload_dir, "month_001")
    seen.reload_build = dbt.run("build")
    seen.reloaded_rows = table_rows(settings)
    seen.january_after_reload = month_row_versions(settings, "2024-01-31")
    return seen


def test_build_is_green_on_both_real_months(history: History) -> None:
    for run in (history.first_build, history.second_build, history.full_refresh):
        assert run is not None
        assert run.returncode == 0, run.output
        assert not run.statuses("fail") and not run.statuses("error"), run.output
        # Unit tests and data tests ran, not just the models.
        assert any(r["unique_id"].startswith("unit_test.") for r in run.results)
        assert any(r["unique_id"].startswith("test.") for r in run.results)
    for mart, rows in history.incremental_rows.items():
        assert len(rows) == 2 * USERS_PER_MONTH, mart


def test_snapshot_tables_match_the_contract(history: History) -> None:
    with psycopg.connect(history.settings.conninfo()) as conn:
        for mart, expected in EXPECTED_TYPES.items():
            actual = dict(
                conn.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'features' and table_name = %s",
                    [mart],
                ).fetchall()
            )
            assert actual == expected, mart


def test_as_of_is_midnight_utc_of_the_month_end(history: History) -> None:
    with psycopg.connect(history.settings.conninfo()) as conn:
        for mart in MARTS:
            values = conn.execute(
                f"select distinct to_char(as_of at time zone 'utc', "
                f"'YYYY-MM-DD\"T\"HH24:MI:SS') from features.{mart} order by 1"
            ).fetchall()
            assert values == [("2024-01-31T00:00:00",), ("2024-02-29T00:00:00",)]


def test_values_arrive_unchanged(history: History) -> None:
    with psycopg.connect(history.settings.conninfo()) as conn:
        fee, total, tv = conn.execute(
            "select monthly_fee, total_paid, plan_stream_tv "
            "from features.subscriptions_profile_snapshots "
            "where user_id = '5575-GNVDE' and as_of = '2024-01-31T00:00:00Z'"
        ).fetchone()
        hours = conn.execute(
            "select watch_hours_30d from features.usage_agg_30d_snapshots "
            "where user_id = '7590-VHVEG' and as_of = '2024-01-31T00:00:00Z'"
        ).fetchone()[0]
        no_net = conn.execute(
            "select count(*) from features.subscriptions_profile_snapshots "
            "where net_service = 'No' and plan_stream_tv is null "
            "and plan_stream_movies is null"
        ).fetchone()[0]
    # Exact float equality on purpose: numeric -> double precision must keep
    # the decimal literal's nearest double, as Feast's Float64 will.
    assert (fee, total, tv) == (56.95, 1889.5, False)
    assert hours == 24.483650766787413
    assert no_net == 2 * 1526  # data/SOURCE.md: 1526 rows per month


def test_new_month_is_processed_alone(history: History) -> None:
    assert history.first_build is not None and history.second_build is not None
    assert history.first_build.rows_inserted() == dict.fromkeys(MARTS, USERS_PER_MONTH)
    assert history.second_build.rows_inserted() == dict.fromkeys(MARTS, USERS_PER_MONTH)
    # January's rows were not rewritten by the February build.
    assert history.january_after_second == history.january_after_first


def test_incremental_history_equals_full_refresh(history: History) -> None:
    assert history.incremental_rows == history.full_refresh_rows


def test_reloaded_month_is_rebuilt_whole(history: History) -> None:
    run = history.reload_build
    assert run is not None and run.returncode == 0, run and run.output
    # Only February was rebuilt, and without the user the reload dropped.
    assert run.rows_inserted() == dict.fromkeys(MARTS, USERS_PER_MONTH - 1)
    rows = history.reloaded_rows
    for mart in MARTS:
        by_month = {1: set(), 2: set()}
        for row in rows[mart]:
            by_month[row[1].astimezone(UTC).month].add(row[0])
        assert len(by_month[2]) == USERS_PER_MONTH - 1, mart
        assert DROPPED_USER not in by_month[2], mart
        assert DROPPED_USER in by_month[1], mart
    # January was left alone.
    assert history.january_after_reload == history.january_before_reload
    with psycopg.connect(history.settings.conninfo()) as conn:
        fee, loaded_at = conn.execute(
            "select monthly_fee, loaded_at "
            "from features.subscriptions_profile_snapshots "
            "where user_id = %s and as_of = '2024-02-29T00:00:00Z'",
            [REPRICED_USER],
        ).fetchone()
        reloaded_at = conn.execute(
            "select loaded_at from raw.month_loads where as_of = '2024-02-29'"
        ).fetchone()[0]
    assert fee == 57.95
    assert loaded_at == reloaded_at


def test_gate_follows_the_builds(history: History) -> None:
    assert history.gate_before_any_build is not None
    assert "run `make dbt`" in history.gate_before_any_build
    # A build of January alone does not vouch for February.
    assert history.gate_after_second_ingest is not None
    assert "run `make dbt`" in history.gate_after_second_ingest
    assert history.gate_after_second_build is None
    # The reload build was green and is the latest: the gate is open.
    assert gate_outcome(history.settings) is None


def test_docs_generate_describes_every_model_and_column(
    history: History, tmp_path: Path
) -> None:
    run = DbtProject(history.settings, tmp_path).run("docs", "generate")
    assert run.returncode == 0, run.output
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text())
    undocumented = []
    for kind in ("nodes", "sources"):
        for unique_id, entry in catalog[kind].items():
            node = manifest[kind][unique_id]
            if not node["description"].strip():
                undocumented.append(unique_id)
            for column in entry["columns"]:
                described = node["columns"].get(column, {}).get("description", "")
                if not described.strip():
                    undocumented.append(f"{unique_id}.{column}")
    assert len(catalog["nodes"]) == 12
    assert undocumented == []


@pytest.fixture(scope="module")
def corrupted(make_database, tmp_path_factory) -> tuple[PgSettings, DbtRun]:
    settings = make_database("dbt_corrupt")
    data_dir = copy_month(tmp_path_factory.mktemp("corrupt"), "month_000", "2024-01-31")
    edit_csv(
        data_dir / "month_000" / "subscriptions.csv",
        lambda row: (
            {**row, "monthly_fee": "-29.85"} if row["user_id"] == DROPPED_USER else row
        ),
    )
    ingest(settings, data_dir, "month_000")
    run = DbtProject(settings, tmp_path_factory.mktemp("dbt_corrupt")).run("build")
    return settings, run


def test_negative_fee_fails_the_build_naming_the_test(corrupted) -> None:
    _, run = corrupted
    assert run.returncode != 0
    assert run.statuses("fail") == {FEE_TEST}
    assert not run.statuses("error")
    assert f"Failure in test {FEE_TEST}" in run.output
    # The snapshot table behind the failing check was not built at all.
    assert "subscriptions_profile_snapshots" in run.statuses("skipped")


def test_negative_fee_never_reaches_the_feature_tables(corrupted) -> None:
    settings, _ = corrupted
    with psycopg.connect(settings.conninfo()) as conn:
        exists = conn.execute(
            "select to_regclass('features.subscriptions_profile_snapshots')"
        ).fetchone()[0]
    assert exists is None


def test_gate_refuses_naming_the_failing_test(corrupted) -> None:
    settings, _ = corrupted
    with pytest.raises(DbtGateError, match=FEE_TEST) as raised:
        require_green_build(settings)
    assert "1 failing row" in str(raised.value)
    assert "make dbt" in str(raised.value)
