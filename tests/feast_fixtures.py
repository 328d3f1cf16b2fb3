"""Helpers for the Feast tests (helper C): not a conftest, imported explicitly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from feast import FeatureStore
from psycopg import sql

from scripts.feast_store import online_tables, repo_module
from scripts.settings import PgSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT = Path(sys.executable).with_name("dbt")
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


@contextmanager
def restored_pg_env() -> Iterator[None]:
    """Put PG* back afterwards: opening a store exports its database, and the
    shared `pg_settings` export must survive this module."""
    saved = {key: os.environ.get(key) for key in PG_VARIABLES}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_build(settings: PgSettings, work_dir: Path) -> subprocess.CompletedProcess:
    """`dbt build` from dbt_project/ with a private target folder."""
    return subprocess.run(
        [
            str(DBT),
            "build",
            "--no-use-colors",
            "--target-path",
            str(work_dir / "target"),
            "--log-path",
            str(work_dir / "logs"),
        ],
        cwd=REPO_ROOT / "dbt_project",
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )


def create_contract_tables(settings: PgSettings) -> None:
    """Empty `features.*` tables typed exactly as the dbt contract says, for
    hand-made point-in-time data."""
    contract = repo_module("dbt_contract")
    with psycopg.connect(settings.conninfo()) as conn:
        conn.execute("create schema if not exists features")
        for model in contract.load_models().values():
            if model.schema != "features":
                continue
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.data_type))
                for c in model.columns.values()
            )
            conn.execute(
                sql.SQL("create table {} ({})").format(
                    sql.Identifier("features", model.name), columns
                )
            )


def online_snapshot(store: FeatureStore, settings: PgSettings) -> dict:
    """Every online row (key, feature) -> (value bytes, event_ts, created_ts)."""
    snapshot = {}
    with psycopg.connect(settings.conninfo()) as conn:
        for table in online_tables(store):
            rows = conn.execute(
                sql.SQL(
                    "select entity_key, feature_name, value, event_ts, created_ts "
                    "from {}"
                ).format(table.identifier)
            ).fetchall()
            for key, name, value, event_ts, created_ts in rows:
                snapshot[(table.view, bytes(key), name)] = (
                    bytes(value),
                    event_ts,
                    created_ts,
                )
    return snapshot
