"""The raw layer's tables: one per CSV, columns in CSV order.

Each table adds `as_of` (the month's snapshot date) and `loaded_at` (one
instant per month load) and is keyed by (user_id, as_of), so every month's
rows, labels included, stay next to the earlier months' ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from psycopg import sql

SCHEMA = "raw"
KEY_COLUMN = "user_id"
# The table that defines which users exist in a month; loaded first.
USERS_TABLE = "users"


class Kind(Enum):
    TEXT = "text"
    DATE = "date"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMERIC = "numeric"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    def identifier(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.name)


def _key() -> Column:
    return Column(KEY_COLUMN, Kind.TEXT)


TABLES: tuple[Table, ...] = (
    Table(
        USERS_TABLE,
        (
            _key(),
            Column("signup_date", Kind.DATE),
            Column("user_gender", Kind.TEXT),
            Column("user_is_senior", Kind.BOOLEAN),
            Column("has_family", Kind.BOOLEAN),
            Column("has_dependents", Kind.BOOLEAN),
        ),
    ),
    Table(
        "subscriptions",
        (
            _key(),
            Column("months_active", Kind.INTEGER),
            # Empty for users without net service: unknown, not "no".
            Column("plan_stream_tv", Kind.BOOLEAN, nullable=True),
            Column("plan_stream_movies", Kind.BOOLEAN, nullable=True),
            Column("contract_type", Kind.TEXT),
            Column("paperless_billing", Kind.BOOLEAN),
            Column("monthly_fee", Kind.NUMERIC),
            Column("total_paid", Kind.NUMERIC),
            Column("net_service", Kind.TEXT),
        ),
    ),
    Table(
        "usage_agg_30d",
        (
            _key(),
            Column("watch_hours_30d", Kind.NUMERIC),
            Column("avg_session_mins_7d", Kind.NUMERIC),
            Column("unique_devices_30d", Kind.INTEGER),
            Column("skips_7d", Kind.INTEGER),
            Column("rebuffer_events_7d", Kind.INTEGER),
        ),
    ),
    Table("payments_agg_90d", (_key(), Column("failed_payments_90d", Kind.INTEGER))),
    Table(
        "support_agg_90d",
        (
            _key(),
            Column("support_tickets_90d", Kind.INTEGER),
            Column("ticket_avg_resolution_hrs_90d", Kind.NUMERIC),
        ),
    ),
    Table("labels", (_key(), Column("churn_label", Kind.BOOLEAN))),
)

MONTH_LOADS = sql.Identifier(SCHEMA, "month_loads")


def create_statements() -> list[sql.Composed]:
    """DDL for the raw schema; every statement is a no-op when it exists."""
    statements = [
        sql.SQL("create schema if not exists {}").format(sql.Identifier(SCHEMA))
    ]
    for table in TABLES:
        columns = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(column.name),
                sql.SQL(column.kind.value),
                sql.SQL("" if column.nullable else " not null"),
            )
            for column in table.columns
        ]
        columns += [
            sql.SQL("as_of date not null"),
            sql.SQL("loaded_at timestamptz not null"),
            sql.SQL("primary key ({}, as_of)").format(sql.Identifier(KEY_COLUMN)),
        ]
        statements.append(
            sql.SQL("create table if not exists {} ({})").format(
                table.identifier(), sql.SQL(", ").join(columns)
            )
        )
    statements.append(
        sql.SQL(
            "create table if not exists {} (as_of date primary key, "
            "month text not null, loaded_at timestamptz not null, "
            "row_counts jsonb not null)"
        ).format(MONTH_LOADS)
    )
    return statements
