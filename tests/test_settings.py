"""The one place that says how to reach PostgreSQL."""

from __future__ import annotations

import getpass
import re

import psycopg
import pytest

from scripts.settings import (
    LOCAL_DATABASE,
    LOCAL_HOST,
    LOCAL_PORT,
    LOCAL_USER,
    PgSettings,
    export_env,
)

from .conftest import REPO_ROOT


def test_no_pghost_means_the_project_local_cluster():
    settings = PgSettings.from_env({})
    assert settings.local_cluster is True
    assert (settings.host, settings.port, settings.user, settings.dbname) == (
        "127.0.0.1",
        55432,
        "streamflow",
        "streamflow",
    )
    assert settings.password == ""


def test_configured_server_follows_libpq_defaults():
    settings = PgSettings.from_env({"PGHOST": "db.internal", "PGDATABASE": "feat"})
    assert settings.local_cluster is False
    assert settings.port == 5432
    assert settings.user == getpass.getuser()
    assert settings.dbname == "feat"


def test_bad_port_names_the_variable():
    with pytest.raises(ValueError, match="PGPORT must be a port number, got 'x1'"):
        PgSettings.from_env({"PGPORT": "x1"})


def test_conninfo_quotes_awkward_passwords_and_keeps_them_out_of_describe():
    settings = PgSettings.from_env({"PGHOST": "h", "PGPASSWORD": "it's a secret"})
    assert "password='it\\'s a secret'" in settings.conninfo()
    assert "secret" not in settings.describe()
    # libpq itself must read back what we wrote.
    parsed = psycopg.conninfo.conninfo_to_dict(settings.conninfo())
    assert parsed["password"] == "it's a secret"


def test_export_env_fills_every_variable_dbt_and_feast_read():
    env: dict[str, str] = {}
    export_env(PgSettings.from_env({}), env)
    assert env == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "55432",
        "PGUSER": "streamflow",
        "PGPASSWORD": "",
        "PGDATABASE": "streamflow",
        "PGTZ": "UTC",
    }


def test_dbt_profile_defaults_match_the_settings_module():
    """profiles.yml repeats the local-cluster defaults in env_var(); keep them equal."""
    profile = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    defaults = dict(re.findall(r"env_var\('(PG\w+)',\s*'([^']*)'\)", profile))
    assert defaults == {
        "PGHOST": LOCAL_HOST,
        "PGPORT": str(LOCAL_PORT),
        "PGUSER": LOCAL_USER,
        "PGPASSWORD": "",
        "PGDATABASE": LOCAL_DATABASE,
    }
