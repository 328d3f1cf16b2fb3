"""Shared fixtures: a real PostgreSQL for every test session.

When PGHOST is unset the project-local cluster is started (scripts/local_db.py);
otherwise the configured server is used. Tests never touch the database the
platform itself uses: each gets a fresh one named after it, dropped first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from scripts.settings import PgSettings, export_env

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATABASE = "streamflow_test"


@pytest.fixture(scope="session")
def server_settings() -> PgSettings:
    """Settings of a reachable server, starting the local cluster if needed."""
    settings = PgSettings.from_env()
    from scripts import local_db

    if settings.local_cluster:
        local_db.ensure_running(settings)
    else:
        # The suite makes its own databases, so a configured server needs only
        # to answer; PGDATABASE may name a database that does not exist yet.
        local_db.ensure_running(settings.with_database("postgres"))
    return settings


def _recreate_database(server: PgSettings, dbname: str) -> PgSettings:
    # CREATE/DROP DATABASE cannot run inside a transaction, hence autocommit;
    # the maintenance database `postgres` exists on every server.
    with psycopg.connect(
        server.with_database("postgres").conninfo(), autocommit=True
    ) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(dbname)
            )
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    logger.info("fresh test database %s on %s", dbname, server.describe())
    return server.with_database(dbname)


@pytest.fixture(scope="session")
def make_database(server_settings: PgSettings) -> Callable[[str], PgSettings]:
    """Return a factory: `make_database("feast")` -> settings of an empty
    database `streamflow_test_feast`. The caller decides whether to export it."""

    def factory(suffix: str) -> PgSettings:
        return _recreate_database(server_settings, f"{TEST_DATABASE}_{suffix}")

    return factory


@pytest.fixture(scope="session")
def pg_settings(server_settings: PgSettings) -> Iterator[PgSettings]:
    """An empty database `streamflow_test`, with PG* exported for subprocesses
    (dbt, Feast, the service) for the rest of the session."""
    settings = _recreate_database(server_settings, TEST_DATABASE)
    saved = {key: os.environ.get(key) for key in settings.as_env()}
    export_env(settings)
    yield settings
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
