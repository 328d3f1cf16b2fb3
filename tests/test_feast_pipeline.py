"""Feast on the real months: ingest -> dbt build -> apply -> features -> materialize.

One database and one applied, materialized store for the whole module (a dbt
build and a materialization take seconds each). Tests that change the store
put it back. The last test breaks the dbt build on purpose and runs after the
others (file order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from feast.infra.offline_stores.contrib.postgres_offline_store import (
    postgres as feast_postgres,
)
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from psycopg import sql

from scripts import build_training_set, materialize
from scripts.build_training_set import write_training_set
from scripts.clock import parse_instant
from scripts.feast_store import (
    KEEP_NEWEST_TRIGGER,
    online_tables,
    open_store,
    read_online,
    repo_module,
)
from scripts.ingest import ingest
from scripts.skew_check import check_skew
from tests.feast_fixtures import (
    REPO_ROOT,
    dbt_build,
    online_snapshot,
    restored_pg_env,
)

pytestmark = pytest.mark.slow

USER = "7590-VHVEG"
END = datetime(2024, 3, 1, tzinfo=UTC)
JAN = datetime(2024, 1, 31, tzinfo=UTC)
FEB = datetime(2024, 2, 29, tzinfo=UTC)
FEATURE_VIEWS = {
    "subs_profile_fv",
    "usage_agg_30d_fv",
    "payments_agg_90d_fv",
    "support_agg_90d_fv",
}


@pytest.fixture(scope="module")
def built(make_database, tmp_path_factory):
    """(settings, store, first materialize report) on the real months."""
    settings = make_database("feast")
    with restored_pg_env():
        ingest(settings, REPO_ROOT / "data")
        result = dbt_build(settings, tmp_path_factory.mktemp("dbt"))
        assert result.returncode == 0, result.stdout[-3000:]
        # Statistics as autovacuum leaves them in production: with them,
        # PostgreSQL plans Feast's point-in-time query differently.
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.execute("analyze")
        store = open_store(settings)
        report = materialize.materialize(store, END)
        yield settings, store, report


@pytest.fixture(scope="module")
def training(built):
    _, store, _ = built
    return build_training_set.build_training_set(store)


@pytest.fixture
def platform_now_march(monkeypatch):
    monkeypatch.setenv("STREAMFLOW_NOW", END.isoformat())


def test_training_set_has_the_course_columns(training):
    assert list(training.columns) == [
        "user_id",
        "event_timestamp",
        "months_active",
        "monthly_fee",
        "paperless_billing",
        "plan_stream_tv",
        "plan_stream_movies",
        "net_service",
        "watch_hours_30d",
        "avg_session_mins_7d",
        "unique_devices_30d",
        "skips_7d",
        "rebuffer_events_7d",
        "failed_payments_90d",
        "support_tickets_90d",
        "ticket_avg_resolution_hrs_90d",
        "churn_label",
    ]
    assert len(training) == 2 * 7043
    assert set(training["event_timestamp"]) == {JAN, FEB}


def test_month_000_values_of_the_course_user(built):
    _, store, _ = built
    frame = build_training_set.build_training_set(store, JAN.date())
    assert len(frame) == 7043
    (row,) = frame[frame.user_id == USER].to_dict("records")
    assert row["months_active"] == 1
    assert row["monthly_fee"] == 29.85
    assert bool(row["paperless_billing"]) is True
    assert row["failed_payments_90d"] == 1
    assert not row["churn_label"]


def test_feast_offline_connections_plan_without_nested_loops(built):
    _, store, _ = built
    offline = store.config.offline_store
    with (
        build_training_set.planner_without_nested_loops(),
        feast_postgres._get_conn(offline) as conn,
    ):
        assert conn.execute("show enable_nestloop").fetchone() == ("off",)
    with feast_postgres._get_conn(offline) as conn:
        assert conn.execute("show enable_nestloop").fetchone() == ("on",)


def test_every_row_gets_the_features_of_its_own_month(built, training):
    settings, _, _ = built
    with psycopg.connect(settings.conninfo()) as conn:
        stored = pd.DataFrame(
            conn.execute(
                "select user_id, as_of, months_active, monthly_fee, watch_hours_30d "
                "from features.subscriptions_profile_snapshots "
                "join features.usage_agg_30d_snapshots using (user_id, as_of)"
            ).fetchall(),
            columns=["user_id", "event_timestamp", "months_active", "monthly_fee", "w"],
        )
    merged = training.merge(
        stored, on=["user_id", "event_timestamp"], suffixes=("", "_db")
    )
    assert len(merged) == len(training)
    assert (merged["months_active"] == merged["months_active_db"]).all()
    assert (merged["monthly_fee"] == merged["monthly_fee_db"]).all()
    assert (merged["watch_hours_30d"] == merged["w"]).all()
    # The months do differ, so this is not the same snapshot twice.
    by_month = merged.pivot_table(
        index="user_id", columns="event_timestamp", values="w"
    )
    assert (by_month[JAN] != by_month[FEB]).any()


def test_training_files_round_trip_exact_values(training, tmp_path):
    csv_path, parquet_path = write_training_set(training, tmp_path)
    from_csv = pd.read_csv(csv_path)
    from_parquet = pd.read_parquet(parquet_path)
    assert list(from_csv.columns) == list(training.columns)
    assert from_csv.loc[from_csv.user_id == USER, "monthly_fee"].tolist() == [
        29.85,
        29.85,
    ]
    pd.testing.assert_frame_equal(from_parquet, training)


def test_registered_views_match_the_built_tables(built):
    settings, store, _ = built
    contract = repo_module("dbt_contract")
    views = store.list_feature_views(allow_cache=False)
    assert contract.drift(views) == []
    pg_types = {"String": "text", "Int32": "integer", "Float64": "double precision"}
    pg_types["Bool"] = "boolean"
    with psycopg.connect(settings.conninfo()) as conn:
        for view in views:
            schema, table = view.batch_source.get_table_query_string().split(".")
            columns = dict(
                conn.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = %s and table_name = %s",
                    (schema, table),
                ).fetchall()
            )
            for feature in view.features:
                assert columns[feature.name] == pg_types[str(feature.dtype)], feature


def test_online_tables_are_loaded_with_the_latest_month(built, platform_now_march):
    _, store, report = built
    assert {w.view for w in report.loaded} == FEATURE_VIEWS
    assert report.online_users == dict.fromkeys(FEATURE_VIEWS, 7043)
    (row,) = read_online(store, [USER], END)
    assert row.found and not row.expired_views
    assert set(row.event_ts.values()) == {FEB}
    assert row.values["monthly_fee"] == 29.85
    assert row.values["months_active"] == 1


def test_second_incremental_run_writes_nothing(built):
    settings, store, _ = built
    before = online_snapshot(store, settings)
    report = materialize.materialize(store, END)
    assert report.loaded == []
    assert set(report.up_to_date) == FEATURE_VIEWS
    assert online_snapshot(store, settings) == before


def test_older_window_never_moves_the_store_back(built):
    settings, store, _ = built
    before = online_snapshot(store, settings)
    # January's snapshot alone, loaded after February's.
    report = materialize.materialize(
        store, JAN + timedelta(days=1), start=JAN - timedelta(days=1)
    )
    assert {w.view for w in report.loaded} == FEATURE_VIEWS
    assert online_snapshot(store, settings) == before
    (row,) = read_online(store, [USER], END)
    assert set(row.event_ts.values()) == {FEB}
    with psycopg.connect(settings.conninfo()) as conn:
        triggers = conn.execute(
            "select count(*) from pg_trigger where tgname = %s", (KEEP_NEWEST_TRIGGER,)
        ).fetchone()[0]
    assert triggers == len(FEATURE_VIEWS)


def test_expired_values_are_not_served_as_present(built):
    _, store, _ = built
    (fresh,) = read_online(store, [USER], FEB + timedelta(days=45))
    assert not fresh.expired_views
    (stale,) = read_online(store, [USER], FEB + timedelta(days=45, seconds=1))
    assert set(stale.expired_views) == FEATURE_VIEWS
    assert set(stale.values.values()) == {None}
    assert stale.found  # the user exists; its values are too old to serve


def test_skew_check_is_clean_after_materialize(built):
    _, store, _ = built
    report = check_skew(store, END)
    assert report.as_of == FEB
    assert report.users == 7043
    assert report.values_compared == 7043 * 14
    assert report.mismatches == []


def test_skew_check_reports_a_changed_online_value(built):
    settings, store, _ = built
    table = next(t for t in online_tables(store) if t.view == "subs_profile_fv")
    key_sql = sql.SQL(
        "select entity_key, value from {} where feature_name = 'monthly_fee' "
        "and value_text = '29.85' limit 1"
    ).format(table.identifier)
    with psycopg.connect(settings.conninfo()) as conn:
        entity_key, original = conn.execute(key_sql).fetchone()
        conn.execute(
            sql.SQL(
                "update {} set value = %s where entity_key = %s "
                "and feature_name = 'monthly_fee'"
            ).format(table.identifier),
            (ValueProto(double_val=99.99).SerializeToString(), entity_key),
        )
    try:
        report = check_skew(store, END)
    finally:
        with psycopg.connect(settings.conninfo()) as conn:
            conn.execute(
                sql.SQL(
                    "update {} set value = %s where entity_key = %s "
                    "and feature_name = 'monthly_fee'"
                ).format(table.identifier),
                (original, entity_key),
            )
    (mismatch,) = report.mismatches
    assert mismatch.feature == "monthly_fee"
    assert mismatch.offline == 29.85 and mismatch.online == 99.99


def test_skew_check_cli_exit_status(built, platform_now_march, capsys):
    from scripts import skew_check

    assert skew_check.main([]) == 0
    assert "0 mismatches" in capsys.readouterr().out


def test_debug_script_prints_a_known_user(built):
    settings, _, _ = built
    completed = subprocess.run(
        [sys.executable, "scripts/debug_online_features.py", USER],
        cwd=REPO_ROOT,
        env={**os.environ, **settings.as_env(), "STREAMFLOW_NOW": END.isoformat()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "monthly_fee" in completed.stdout and "29.85" in completed.stdout
    assert "as_of 2024-02-29T00:00:00+00:00" in completed.stdout


def test_debug_script_says_an_unknown_user_is_not_found(built, capsys):
    from scripts import debug_online_features

    assert debug_online_features.main(["nobody-0000"]) == 1
    out = capsys.readouterr().out
    assert "monthly_fee" in out and "None" in out
    assert "'nobody-0000' not found" in out


def test_debug_script_names_the_registered_services_for_an_unknown_one(built, capsys):
    from scripts import debug_online_features

    assert debug_online_features.main([USER, "--feature-service", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown feature service 'nope'; registered: churn_model_v1" in err


def test_end_is_parsed_as_utc():
    assert parse_instant("2024-03-01") == END
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_instant("yesterday", what="END")


def _month_001_with_fee(tmp_dir, fee: str):
    """A copy of month_001 where the course user's monthly_fee is `fee`."""
    data_dir = tmp_dir / "data"
    (data_dir / "month_001").mkdir(parents=True)
    for source in (REPO_ROOT / "data" / "month_001").iterdir():
        text = source.read_text()
        if source.name == "subscriptions.csv":
            text = text.replace(
                f"{USER},1,False,False,Month-to-month,True,29.85",
                f"{USER},1,False,False,Month-to-month,True,{fee}",
                1,
            )
        (data_dir / "month_001" / source.name).write_text(text)
    (data_dir / "manifest.csv").write_text("month,as_of\nmonth_001,2024-02-29\n")
    return data_dir


def test_a_month_ingested_again_reaches_the_online_store(built, tmp_path_factory):
    """Same as_of, corrected value: not newer by event time, yet it must be
    materialized, and only once."""
    settings, store, _ = built
    data_dir = _month_001_with_fee(tmp_path_factory.mktemp("fixed_month"), "31.15")
    ingest(settings, data_dir, "month_001")
    result = dbt_build(settings, tmp_path_factory.mktemp("dbt_fixed"))
    assert result.returncode == 0, result.stdout[-3000:]

    report = materialize.materialize(store, END)
    assert {w.view for w in report.loaded} == FEATURE_VIEWS
    assert {w.start for w in report.loaded} == {FEB}
    (row,) = read_online(store, [USER], END)
    assert row.values["monthly_fee"] == 31.15
    assert set(row.event_ts.values()) == {FEB}
    assert check_skew(store, END).mismatches == []

    again = materialize.materialize(store, END)
    assert again.loaded == []


def test_gate_refuses_features_and_materialize_after_a_failing_build(
    built, tmp_path_factory, capsys
):
    settings, _, _ = built
    # A negative fee fails dbt's range test on monthly_fee.
    data_dir = _month_001_with_fee(tmp_path_factory.mktemp("bad_month"), "-29.85")
    ingest(settings, data_dir, "month_001")
    result = dbt_build(settings, tmp_path_factory.mktemp("dbt_bad"))
    assert result.returncode != 0

    assert build_training_set.main([]) == 1
    assert materialize.main(["--end", END.isoformat()]) == 1
    err = capsys.readouterr().err
    assert "features refused:" in err and "materialize refused:" in err
    assert "monthly_fee" in err
    assert "Traceback" not in err


def test_materialize_cli_rejects_bad_windows_before_touching_anything(capsys):
    assert materialize.main(["--start", "2024-03-01", "--end", "2024-02-01"]) == 2
    assert materialize.main(["--end", ""]) == 2
    err = capsys.readouterr().err
    assert "--start 2024-03-01T00:00:00+00:00 is not before END" in err
    assert "END" in err.splitlines()[-1]
    assert "Traceback" not in err
