"""Point-in-time correctness of the training set on small hand-made data.

A database of its own holds `features.*` tables typed from the dbt contract
with a few rows whose values encode their snapshot month, so every answer
tells which snapshot it came from. The database's time zone is Tokyo, far from
UTC, so a naive entity time read in the session zone would pick another month.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from scripts.build_training_set import historical_features
from scripts.feast_store import apply_definitions, open_store
from tests.feast_fixtures import create_contract_tables, restored_pg_env

pytestmark = pytest.mark.slow

JAN = datetime(2024, 1, 31, tzinfo=UTC)
FEB = datetime(2024, 2, 29, tzinfo=UTC)
# months_active encodes the snapshot: 1 in January, 2 in February.
MONTHS_ACTIVE = {JAN: 1, FEB: 2}


@pytest.fixture(scope="module")
def store(make_database):
    settings = make_database("pit")
    with restored_pg_env():
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("alter database {} set timezone = 'Asia/Tokyo'").format(
                    sql.Identifier(settings.dbname)
                )
            )
        create_contract_tables(settings)
        with psycopg.connect(settings.conninfo()) as conn:
            for as_of, months in MONTHS_ACTIVE.items():
                # "alice" has both months, "bob" only January.
                for user in ("alice", "bob") if as_of == JAN else ("alice",):
                    conn.execute(
                        "insert into features.subscriptions_profile_snapshots "
                        "(user_id, as_of, months_active, monthly_fee, "
                        "paperless_billing, plan_stream_tv, plan_stream_movies, "
                        "net_service, contract_type, total_paid, loaded_at) values "
                        "(%s, %s, %s, %s, true, null, false, 'DSL', "
                        "'Month-to-month', 1.0, now())",
                        (user, as_of, months, 29.85 + months),
                    )
                    conn.execute(
                        "insert into features.payments_agg_90d_snapshots "
                        "(user_id, as_of, failed_payments_90d, loaded_at) "
                        "values (%s, %s, %s, now())",
                        (user, as_of, months * 10),
                    )
        feature_store = open_store(settings)
        apply_definitions(feature_store)
        yield feature_store


def features_at(store, rows: list[tuple[str, object]]) -> pd.DataFrame:
    entity_rows = pd.DataFrame(rows, columns=["user_id", "event_timestamp"])
    return historical_features(store, entity_rows)


def test_time_between_snapshots_gets_the_earlier_one(store):
    frame = features_at(store, [("alice", JAN + timedelta(days=10))])
    assert frame.loc[0, "months_active"] == 1
    assert frame.loc[0, "monthly_fee"] == 30.85
    assert frame.loc[0, "failed_payments_90d"] == 10


def test_snapshot_is_visible_from_its_own_instant(store):
    frame = features_at(store, [("alice", FEB), ("alice", FEB - timedelta(seconds=1))])
    assert list(frame["months_active"]) == [1, 2]  # sorted by time


def test_before_any_snapshot_features_are_null(store):
    frame = features_at(store, [("alice", JAN - timedelta(days=1))])
    assert (
        frame.loc[0, ["months_active", "monthly_fee", "failed_payments_90d"]]
        .isna()
        .all()
    )


def test_unknown_user_gets_nulls(store):
    frame = features_at(store, [("carol", FEB)])
    assert pd.isna(frame.loc[0, "months_active"])


def test_no_feature_ever_comes_from_after_the_row_time(store):
    times = [
        JAN - timedelta(hours=1),
        JAN,
        JAN + timedelta(days=28),
        FEB,
        FEB + timedelta(days=3),
    ]
    frame = features_at(store, [(user, t) for user in ("alice", "bob") for t in times])
    assert len(frame) == 10
    for row in frame.itertuples():
        if pd.isna(row.months_active):
            assert row.event_timestamp < JAN
            continue
        snapshot = {v: k for k, v in MONTHS_ACTIVE.items()}[row.months_active]
        assert snapshot <= row.event_timestamp
        # ...and it is the user's latest snapshot not after the row time.
        owned = MONTHS_ACTIVE if row.user_id == "alice" else {JAN: 1}
        assert snapshot == max(s for s in owned if s <= row.event_timestamp), row
    bob_after_feb = frame[(frame.user_id == "bob") & (frame.event_timestamp >= FEB)]
    assert list(bob_after_feb["months_active"]) == [1, 1]


def test_naive_and_aware_entity_times_agree(store):
    # 05:00 UTC on Jan 31 is after the January snapshot; read as Tokyo time it
    # would be 20:00 UTC on Jan 30, before it.
    naive = features_at(store, [("alice", datetime(2024, 1, 31, 5))])
    aware_utc = features_at(store, [("alice", datetime(2024, 1, 31, 5, tzinfo=UTC))])
    aware_tokyo = features_at(
        store, [("alice", pd.Timestamp("2024-01-31T14:00+09:00"))]
    )
    for frame in (naive, aware_utc, aware_tokyo):
        assert frame.loc[0, "months_active"] == 1
        assert frame.loc[0, "event_timestamp"] == datetime(2024, 1, 31, 5, tzinfo=UTC)


def test_repeated_entity_rows_are_all_kept(store):
    when = FEB + timedelta(days=1)
    frame = features_at(store, [("alice", when), ("alice", when), ("bob", when)])
    assert len(frame) == 3
    assert list(frame["months_active"]) == [2, 2, 1]


def test_value_past_the_ttl_is_null(store):
    inside = FEB + timedelta(days=45)
    outside = FEB + timedelta(days=45, seconds=1)
    frame = features_at(store, [("alice", inside), ("alice", outside)])
    assert frame.loc[0, "months_active"] == 2
    assert pd.isna(frame.loc[1, "months_active"])
    # bob's January snapshot is 45 days old on March 16.
    frame = features_at(store, [("bob", JAN + timedelta(days=46))])
    assert pd.isna(frame.loc[0, "failed_payments_90d"])
