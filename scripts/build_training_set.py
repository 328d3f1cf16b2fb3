"""Build the point-in-time training set (`make features [AS_OF=2024-01-31]`).

The entity rows are every (user_id, as_of) of the dbt labels model, with the
label carried along as an entity column, so each row gets the features Feast
saw at that instant and the label of that same month. get_historical_features
runs the point-in-time join inside PostgreSQL with the churn model's feature
service. Writes data/processed/training_df.csv (user_id, event_timestamp, the
features, churn_label) and a Parquet copy with the same columns and types.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd
from feast import FeatureStore
from feast.infra.offline_stores.contrib.postgres_offline_store import (
    postgres as feast_postgres,
)

from scripts.dbt_gate import DbtGateError, require_green_build
from scripts.feast_store import (
    FEATURE_SERVICE,
    REPO_ROOT,
    apply_definitions,
    configure_cli_logging,
    open_store,
    repo_module,
    service_features,
)
from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

OUTPUT_DIR = REPO_ROOT / "data" / "processed"
ENTITY_TIME_COLUMN = "event_timestamp"
LABEL_MODEL = "labels_snapshots"
LABEL_COLUMN = "churn_label"


def labels_entity_sql(as_of: date | None = None) -> str:
    """Entity rows from the dbt labels model (names from the dbt contract)."""
    labels = repo_module("dbt_contract").model(LABEL_MODEL)
    for column in ("user_id", "as_of", LABEL_COLUMN):
        labels.column(column, context="the training set's entity rows")
    where = ""
    if as_of is not None:
        # as_of is a parsed date, so its ISO text is safe to inline; Feast
        # takes the entity rows as SQL text, not as a parameterised query.
        where = f" where as_of = '{as_of.isoformat()}T00:00:00+00:00'::timestamptz"
    return (
        f"select user_id, as_of as {ENTITY_TIME_COLUMN}, {LABEL_COLUMN} "
        f"from {labels.relation}{where}"
    )


def normalise_entity_times(entity_df: pd.DataFrame) -> pd.DataFrame:
    """Entity times as UTC-aware timestamps.

    Feast uploads a naive column as `timestamp` and PostgreSQL compares it with
    the sources' `timestamptz` in the session time zone, so the same naive time
    would select different snapshots on differently configured servers. Naive
    means UTC on this platform.
    """
    times = pd.to_datetime(entity_df[ENTITY_TIME_COLUMN])
    times = (
        times.dt.tz_localize("UTC")
        if times.dt.tz is None
        else times.dt.tz_convert("UTC")
    )
    return entity_df.assign(**{ENTITY_TIME_COLUMN: times})


@contextmanager
def planner_without_nested_loops() -> Iterator[None]:
    """Feast's offline connections opened inside have nested-loop joins off.

    Feast's point-in-time query bounds each source's `as_of` with sub-selects
    whose values PostgreSQL cannot know when planning: once the snapshot
    tables have statistics it expects a handful of rows, joins the CTEs with
    nested loops and the query turns quadratic (three analysed months: over
    nine minutes instead of about two seconds). Feast's PostgreSQL settings
    have no way to pass session options (it sets `options` itself, which also
    overrides PGOPTIONS), so its connection helper is wrapped for the
    duration. Pinned to feast 0.67 in pyproject.toml; a test checks that the
    setting reaches Feast's connection.
    """
    original = feast_postgres._get_conn

    def connect_without_nested_loops(config):
        conn = original(config)
        conn.execute("set enable_nestloop = off")
        # A session setting outlives this transaction; Feast then switches the
        # connection to read-only, which it can only do outside a transaction.
        conn.commit()
        return conn

    feast_postgres._get_conn = connect_without_nested_loops
    try:
        yield
    finally:
        feast_postgres._get_conn = original


def historical_features(
    store: FeatureStore,
    entity_rows: pd.DataFrame | str,
    service_name: str = FEATURE_SERVICE,
) -> pd.DataFrame:
    """The feature service's features at each entity row's time.

    Columns: the entity columns, then the features in dbt column order. Every
    entity row is kept, duplicates included, in ascending time then user order.
    """
    if isinstance(entity_rows, pd.DataFrame):
        entity_rows = normalise_entity_times(entity_rows)
    service = store.get_feature_service(service_name)
    with planner_without_nested_loops():
        frame = store.get_historical_features(
            entity_df=entity_rows, features=service
        ).to_df()
    features = [f.name for f in service_features(store, service_name)]
    frame = frame[[c for c in frame.columns if c not in features] + features]
    frame[ENTITY_TIME_COLUMN] = pd.to_datetime(frame[ENTITY_TIME_COLUMN], utc=True)
    return frame.sort_values(
        [ENTITY_TIME_COLUMN, "user_id"], kind="stable", ignore_index=True
    )


def build_training_set(store: FeatureStore, as_of: date | None = None) -> pd.DataFrame:
    """user_id, event_timestamp, the features, churn_label for every label row."""
    frame = historical_features(store, labels_entity_sql(as_of))
    columns = [c for c in frame.columns if c != LABEL_COLUMN] + [LABEL_COLUMN]
    return frame[columns]


def write_training_set(
    frame: pd.DataFrame, output_dir: Path = OUTPUT_DIR
) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "training_df.csv"
    parquet_path = output_dir / "training_df.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path, index=False)
    return [csv_path, parquet_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--as-of", type=date.fromisoformat, help="only this month (e.g. 2024-01-31)"
    )
    args = parser.parse_args(argv)
    configure_cli_logging()

    settings = PgSettings.from_env()
    try:
        require_green_build(settings)
    except DbtGateError as exc:
        sys.stderr.write(f"features refused: {exc}\n")
        return 1

    started = time.monotonic()
    store = open_store(settings)
    apply_definitions(store)
    frame = build_training_set(store, args.as_of)
    if frame.empty:
        sys.stderr.write(
            f"features: no label rows{f' for {args.as_of}' if args.as_of else ''} in "
            f"{LABEL_MODEL}; nothing written\n"
        )
        return 1
    paths = write_training_set(frame)
    logger.info(
        "training set: %d rows x %d columns, %d months, in %.1f s -> %s",
        len(frame),
        len(frame.columns),
        frame[ENTITY_TIME_COLUMN].nunique(),
        time.monotonic() - started,
        ", ".join(str(p.relative_to(REPO_ROOT)) for p in paths),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
