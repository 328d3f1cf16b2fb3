"""Load the online store incrementally up to now (`make materialize [END=...]`).

Each view continues from where its last materialization ended; a view that was
never materialized starts one TTL before END, because anything older would be
expired at END anyway. Feast's own materialize_incremental starts that first
window from the wall clock instead of END, which loads nothing when the
platform clock (STREAMFLOW_NOW) replays an earlier month, so the windows are
computed here and handed to FeatureStore.materialize. A second run with the
same END finds every view up to date and writes nothing.

A month ingested again after it was materialized (same as_of, corrected
values, a newer loaded_at) is not newer by event time, so an END-based window
would skip it; the plan therefore starts each view's window at the earliest
as_of whose loaded_at is newer than anything in that view's online table
(the sources declare loaded_at as Feast's created timestamp, which lands in
the online store's created_ts).

`--start` reloads an explicit window (a backfill). Loading an older window
after a newer one cannot move the store back in time: the keep-newest trigger
(scripts/feast_store.py) skips any online update whose event time is older
than the stored one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from feast import FeatureStore, FeatureView
from psycopg import sql

from scripts.clock import parse_instant, platform_now
from scripts.dbt_gate import DbtGateError, require_green_build
from scripts.feast_store import (
    apply_definitions,
    configure_cli_logging,
    online_settings,
    online_tables,
    open_store,
)
from scripts.settings import PgSettings

logger = logging.getLogger(__name__)


@dataclass
class Window:
    view: str
    start: datetime
    end: datetime


@dataclass
class MaterializeReport:
    end: datetime
    loaded: list[Window] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    online_users: dict[str, int] = field(default_factory=dict)


def plan_windows(
    store: FeatureStore, end: datetime, start: datetime | None = None
) -> tuple[list[Window], list[str]]:
    """(windows to load, views already materialized up to `end`)."""
    windows, up_to_date = [], []
    views = sorted(store.list_feature_views(allow_cache=False), key=lambda v: v.name)
    reloaded_from = {} if start is not None else _reloaded_as_ofs(store, views, end)
    for view in views:
        if start is not None:
            view_start = start
        elif view.most_recent_end_time is not None:
            view_start = view.most_recent_end_time
            reloaded = reloaded_from.get(view.name)
            if reloaded is not None and reloaded < view_start:
                logger.info(
                    "%s: snapshots from %s on were ingested again since they were "
                    "materialized; reloading from there",
                    view.name,
                    reloaded.isoformat(),
                )
                view_start = reloaded
        else:
            view_start = end - view.ttl
        if view_start >= end:
            if view_start > end:
                logger.warning(
                    "%s is materialized up to %s, later than END %s; nothing older "
                    "is reloaded (pass --start to reload a window)",
                    view.name,
                    view_start.isoformat(),
                    end.isoformat(),
                )
            up_to_date.append(view.name)
        else:
            windows.append(Window(view.name, view_start, end))
    return windows, up_to_date


def _reloaded_as_ofs(
    store: FeatureStore, views: list[FeatureView], end: datetime
) -> dict[str, datetime]:
    """For each materialized view, the earliest event time up to `end` whose
    rows were loaded after the newest row its online table holds; views with
    none are left out. One connection and one registry read for all views."""
    tables = {table.view: table for table in online_tables(store)}
    earliest = {}
    with psycopg.connect(online_settings(store).conninfo()) as conn:
        for view in views:
            if view.most_recent_end_time is None or view.name not in tables:
                continue
            source = view.batch_source
            query = sql.SQL(
                "select min({event_ts}) from {source} "
                "where {event_ts} <= %(end)s "
                "and {loaded_at} > (select max(created_ts) from {online})"
            ).format(
                event_ts=sql.Identifier(source.timestamp_field),
                loaded_at=sql.Identifier(source.created_timestamp_column),
                source=sql.SQL(source.get_table_query_string()),
                online=tables[view.name].identifier,
            )
            row = conn.execute(query, {"end": end}).fetchone()
            if row and row[0] is not None:
                earliest[view.name] = row[0]
    return earliest


def materialize(
    store: FeatureStore, end: datetime, start: datetime | None = None
) -> MaterializeReport:
    """Apply the definitions when they changed, then load each view's window."""
    if start is not None and start >= end:
        raise ValueError(
            f"--start {start.isoformat()} is not before END {end.isoformat()}"
        )
    apply_definitions(store)
    report = MaterializeReport(end=end)
    windows, report.up_to_date = plan_windows(store, end, start)
    for window in windows:
        started = time.monotonic()
        store.materialize(window.start, window.end, feature_views=[window.view])
        logger.info(
            "%s: loaded %s .. %s in %.1f s",
            window.view,
            window.start.isoformat(),
            window.end.isoformat(),
            time.monotonic() - started,
        )
        report.loaded.append(window)
    for view in report.up_to_date:
        logger.info("%s: already materialized up to %s, nothing new", view, end)
    report.online_users = _count_online_users(store)
    return report


def _count_online_users(store: FeatureStore) -> dict[str, int]:
    counts = {}
    with psycopg.connect(online_settings(store).conninfo()) as conn:
        for table in online_tables(store):
            row = conn.execute(
                sql.SQL("select count(distinct entity_key) from {}").format(
                    table.identifier
                )
            ).fetchone()
            counts[table.view] = row[0] if row else 0
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--end", help="ISO date or date-time to load up to (default: platform now)"
    )
    parser.add_argument(
        "--start", help="reload from this instant instead of the last end (backfill)"
    )
    args = parser.parse_args(argv)
    configure_cli_logging()
    try:
        # `is not None`: an empty --end is a mistake to report, not "now".
        end = (
            parse_instant(args.end, what="END")
            if args.end is not None
            else platform_now()
        )
        start = (
            parse_instant(args.start, what="--start")
            if args.start is not None
            else None
        )
        if start is not None and start >= end:
            raise ValueError(
                f"--start {start.isoformat()} is not before END {end.isoformat()}"
            )
    except ValueError as exc:
        sys.stderr.write(f"materialize: {exc}\n")
        return 2

    settings = PgSettings.from_env()
    try:
        require_green_build(settings)
    except DbtGateError as exc:
        sys.stderr.write(f"materialize refused: {exc}\n")
        return 1

    started = time.monotonic()
    store = open_store(settings)
    report = materialize(store, end, start)
    seconds = time.monotonic() - started
    logger.info(
        "materialized %d views (%d already up to date) up to %s in %.1f s; "
        "online users per view: %s",
        len(report.loaded),
        len(report.up_to_date),
        end.isoformat(),
        seconds,
        report.online_users,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
