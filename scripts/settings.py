"""How every part of the platform reaches PostgreSQL.

The standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)
decide. When PGHOST is unset no server is configured, and the platform uses
the project-local cluster that `make db-up` starts (scripts/local_db.py), with
the defaults below. dbt's profiles.yml repeats these defaults in `env_var()`
calls and Feast's feature_store.yaml expands `${PG...}`, so `export_env()` (or
`make -s env`) must have filled the environment before either runs; a test
keeps profiles.yml in step with this module.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 55432
LOCAL_USER = "streamflow"
LOCAL_DATABASE = "streamflow"


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    # True when PGHOST was unset and the project-local cluster is meant.
    local_cluster: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PgSettings:
        env = os.environ if env is None else env
        local = not env.get("PGHOST")
        port_text = env.get("PGPORT") or str(LOCAL_PORT if local else 5432)
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(
                f"PGPORT must be a port number, got {port_text!r}"
            ) from None
        return cls(
            host=env.get("PGHOST") or LOCAL_HOST,
            port=port,
            # Like libpq, a configured server defaults to the login name.
            user=env.get("PGUSER") or (LOCAL_USER if local else getpass.getuser()),
            password=env.get("PGPASSWORD", ""),
            dbname=env.get("PGDATABASE") or LOCAL_DATABASE,
            local_cluster=local,
        )

    def with_database(self, dbname: str) -> PgSettings:
        return PgSettings(
            self.host, self.port, self.user, self.password, dbname, self.local_cluster
        )

    def conninfo(self, **extra: str | int) -> str:
        """A libpq connection string for psycopg."""
        parts = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            **extra,
        }
        if self.password:
            parts["password"] = self.password
        return " ".join(f"{key}={_quote(str(value))}" for key, value in parts.items())

    def as_env(self) -> dict[str, str]:
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def describe(self) -> str:
        """Where the server is, without the password, for logs and errors."""
        kind = "project-local cluster" if self.local_cluster else "configured server"
        return f"{kind} {self.user}@{self.host}:{self.port}/{self.dbname}"


def _quote(value: str) -> str:
    if value and not any(char in value for char in " '\\"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def export_env(
    settings: PgSettings | None = None, env: MutableMapping[str, str] | None = None
) -> PgSettings:
    """Fill the PG* variables so that child processes, dbt and Feast agree."""
    settings = settings or PgSettings.from_env()
    target = os.environ if env is None else env
    target.update(settings.as_env())
    # Feast writes naive UTC times into timestamptz columns of the online store,
    # which PostgreSQL reads in the session's time zone: pin every session that
    # libpq opens (Feast, dbt, the service) to UTC.
    target["PGTZ"] = "UTC"
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description='Print the PG* settings as shell exports: eval "$(make -s env)".'
    )
    parser.parse_args(argv)
    env: dict[str, str] = {}
    export_env(PgSettings.from_env(), env)
    for key, value in env.items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
