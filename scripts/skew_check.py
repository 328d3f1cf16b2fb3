"""Compare online features with offline ones at the latest as_of (`make skew-check`).

For every user of the newest snapshot month of the feature views' sources, the
offline answer (get_historical_features at that as_of) must equal what the
online store would serve now: the online value read through Feast, with the
project's TTL rule applied at platform_now() (an expired value counts as
missing). Prints every mismatch (the first 20 in full) and exits 1 if any.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from feast import FeatureStore

from scripts.build_training_set import ENTITY_TIME_COLUMN, historical_features
from scripts.clock import platform_now
from scripts.feast_store import (
    FEATURE_SERVICE,
    chunks,
    configure_cli_logging,
    online_settings,
    open_store,
    read_online,
    service_features,
)
from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

# Entity rows per online read: bounds the size of one ANY(...) array.
ONLINE_BATCH = 1000
LISTED_MISMATCHES = 20


@dataclass(frozen=True)
class Mismatch:
    user_id: str
    feature: str
    offline: Any
    online: Any
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.user_id} {self.feature}: offline {self.offline!r} "
            f"online {self.online!r}{note}"
        )


@dataclass
class SkewReport:
    as_of: datetime | None
    now: datetime
    users: int = 0
    values_compared: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def by_feature(self) -> Counter[str]:
        return Counter(m.feature for m in self.mismatches)


def latest_entity_sql(store: FeatureStore, service_name: str) -> tuple[str, datetime]:
    """SQL for every user of the newest as_of among the service's sources."""
    service = store.get_feature_service(service_name)
    sources = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        sources.append(
            (
                view.batch_source.get_table_query_string(),
                view.batch_source.timestamp_field,
            )
        )
    newest = " union all ".join(f"select max({ts}) from {rel}" for rel, ts in sources)
    with psycopg.connect(online_settings(store).conninfo()) as conn:
        row = conn.execute(f"select max(m) from ({newest}) as newest(m)").fetchone()
    latest = row[0] if row else None
    if latest is None:
        raise LookupError("the feature views' sources hold no rows; run `make dbt`")
    users = " union ".join(
        f"select user_id from {rel} where {ts} = '{latest.isoformat()}'::timestamptz"
        for rel, ts in sources
    )
    return (
        f"select user_id, '{latest.isoformat()}'::timestamptz as {ENTITY_TIME_COLUMN} "
        f"from ({users}) as latest_users"
    ), latest


def _same(offline: Any, online: Any) -> bool:
    offline_missing = offline is None or (
        isinstance(offline, float) and math.isnan(offline)
    )
    if offline_missing or online is None:
        return offline_missing and online is None
    if isinstance(online, bool) or isinstance(offline, bool):
        return bool(offline) == bool(online) and type(online) is bool
    if isinstance(online, int | float):
        # Exact equality on purpose: both sides are the same float8, and a
        # Float32 round trip (29.85 -> 29.850000381) is exactly the skew to catch.
        return float(offline) == float(online)
    return offline == online


def check_skew(
    store: FeatureStore, now: datetime, service_name: str = FEATURE_SERVICE
) -> SkewReport:
    entity_sql, latest = latest_entity_sql(store, service_name)
    offline = historical_features(store, entity_sql, service_name)
    report = SkewReport(as_of=latest, now=now, users=len(offline))
    features = service_features(store, service_name)
    offline_by_user = offline.set_index("user_id")
    for user_ids in chunks(list(offline["user_id"]), ONLINE_BATCH):
        for row in read_online(store, user_ids, now, service_name):
            offline_row = offline_by_user.loc[row.user_id]
            for feature in features:
                offline_value = offline_row[feature.name]
                if pd.isna(offline_value):
                    offline_value = None
                elif hasattr(offline_value, "item"):  # numpy scalar -> Python
                    offline_value = offline_value.item()
                online_value = row.values[feature.name]
                report.values_compared += 1
                if not _same(offline_value, online_value):
                    note = ""
                    if feature.view in row.expired_views:
                        note = f"online value expired at {now.isoformat()}"
                    elif row.event_ts.get(feature.view) is None:
                        note = "no online row"
                    report.mismatches.append(
                        Mismatch(
                            row.user_id, feature.name, offline_value, online_value, note
                        )
                    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-service", default=FEATURE_SERVICE)
    args = parser.parse_args(argv)
    configure_cli_logging()

    started = time.monotonic()
    store = open_store(PgSettings.from_env())
    now = platform_now()
    report = check_skew(store, now, args.feature_service)
    out = sys.stdout
    out.write(
        f"skew check at as_of {report.as_of.isoformat() if report.as_of else '-'} "
        f"(platform now {now.isoformat()}): {report.users} users, "
        f"{report.values_compared} values, {len(report.mismatches)} mismatches "
        f"in {time.monotonic() - started:.1f} s\n"
    )
    for feature, count in sorted(report.by_feature().items()):
        out.write(f"  {feature}: {count} mismatches\n")
    for mismatch in report.mismatches[:LISTED_MISMATCHES]:
        out.write(f"  {mismatch.describe()}\n")
    if len(report.mismatches) > LISTED_MISMATCHES:
        out.write(f"  ... and {len(report.mismatches) - LISTED_MISMATCHES} more\n")
    if report.mismatches and all(
        m.note.startswith("online value expired") for m in report.mismatches
    ):
        out.write(
            "  every mismatch is a value past its TTL at platform now: the online "
            "store holds no snapshot younger than the TTL (replaying course data? "
            "set NOW=/STREAMFLOW_NOW= to the replayed date)\n"
        )
    return 1 if report.mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
