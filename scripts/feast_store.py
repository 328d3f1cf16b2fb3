"""What every Feast script shares: the store, the definitions, the online tables
and the TTL rule.

The feature repository (feature_repo/) is a folder of loose modules, as `feast
apply` expects; this module imports them by putting that folder on sys.path.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource
from feast.diff.property_diff import PropertyDiff, TransitionType
from feast.diff.registry_diff import diff_between
from feast.feature_view import DUMMY_ENTITY
from feast.infra.online_stores.helpers import compute_table_id
from feast.project import Project
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete
from google.protobuf.message import Message
from psycopg import sql

from scripts.settings import PgSettings, export_env

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"
FEATURE_SERVICE = "churn_model_v1"
DEFINITION_MODULES = ("entities", "data_sources", "feature_views", "feature_services")


def open_store(settings: PgSettings) -> FeatureStore:
    """A FeatureStore on `settings`' database.

    feature_store.yaml expands ${PG*} from the environment, so the settings are
    exported first; that also points every child process at the same database.
    """
    export_env(settings)
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR))


def repo_module(name: str) -> ModuleType:
    """A module of feature_repo/, imported under its flat name as `feast apply`
    imports it (the definitions import each other that way)."""
    if str(FEATURE_REPO_DIR) not in sys.path:
        sys.path.insert(0, str(FEATURE_REPO_DIR))
    return importlib.import_module(name)


def load_definitions(project: str) -> RepoContents:
    """The objects defined in feature_repo/, collected as `feast apply` does."""
    found: dict[type, list[Any]] = {
        DataSource: [],
        Entity: [],
        FeatureView: [],
        FeatureService: [],
    }
    for module_name in DEFINITION_MODULES:
        module = repo_module(module_name)
        for value in vars(module).values():
            for kind, objects in found.items():
                # Identity, not equality: an object imported into several
                # modules is one definition.
                if isinstance(value, kind) and not any(value is o for o in objects):
                    objects.append(value)
    return RepoContents(
        projects=[Project(name=project)],
        data_sources=found[DataSource],
        feature_views=found[FeatureView],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        # `feast apply` always registers the placeholder entity of entity-less
        # views; doing the same keeps the CLI and this module from undoing
        # each other.
        entities=[*found[Entity], DUMMY_ENTITY],
        feature_services=found[FeatureService],
        permissions=[],
    )


def definition_changes(store: FeatureStore, repo: RepoContents) -> list[str]:
    """Names of the objects whose registered form differs from feature_repo/
    (all of them when the registry is empty), as `kind name: transition`."""
    diff = diff_between(store.registry, store.project, repo)
    return [
        f"{change.feast_object_type.name.lower()} {change.name}: "
        f"{change.transition_type.name.lower()}"
        for change in diff.feast_object_diffs
        if change.transition_type != TransitionType.UNCHANGED
        and (
            change.transition_type != TransitionType.UPDATE
            or any(_differs(p) for p in change.feast_object_property_diffs)
        )
    ]


def _differs(property_diff: PropertyDiff) -> bool:
    # A view embeds its batch source with the source's created/updated
    # timestamps, which every materialization rewrites; those are bookkeeping,
    # not a change of definition.
    existing, declared = property_diff.val_existing, property_diff.val_declared
    if isinstance(existing, Message) and isinstance(declared, Message):
        existing, declared = type(existing)(), type(declared)()
        existing.CopyFrom(property_diff.val_existing)
        declared.CopyFrom(property_diff.val_declared)
        for message in (existing, declared):
            if "meta" in message.DESCRIPTOR.fields_by_name:
                message.ClearField("meta")
    return existing != declared


def apply_definitions(store: FeatureStore, *, force: bool = False) -> list[str]:
    """Register feature_repo/ like `feast apply` (objects removed from the repo
    are deleted) when anything differs; returns the changes applied.

    The online tables Feast creates get the keep-newest trigger either way, so
    a database whose tables were recreated by hand is repaired too.
    """
    repo = load_definitions(store.project)
    changes = definition_changes(store, repo)
    if changes or force:
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
            store.project, store.registry, repo
        )
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
        logger.info("applied %d changed definitions: %s", len(changes), changes)
    else:
        logger.info("definitions unchanged; registry already up to date")
    install_keep_newest_triggers(store)
    return changes


@dataclass(frozen=True)
class OnlineTable:
    view: str
    schema: str
    table: str

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


def online_tables(store: FeatureStore) -> list[OnlineTable]:
    """The PostgreSQL table of every registered feature view's online values."""
    config = store.config
    schema = config.online_store.db_schema or config.online_store.user
    versioned = config.registry.enable_online_feature_view_versioning
    return [
        OnlineTable(view.name, schema, compute_table_id(store.project, view, versioned))
        for view in sorted(
            store.list_feature_views(allow_cache=False), key=lambda v: v.name
        )
    ]


# Feast's online write is an upsert (INSERT ... ON CONFLICT DO UPDATE), which
# fires BEFORE UPDATE row triggers; returning NULL skips that row's update, so
# a window materialized late can never replace a newer value with an older one.
# For the same event time the later ingest (created_ts, from loaded_at) wins.
_KEEP_NEWEST_FUNCTION = """
create or replace function {schema}.keep_newest_online_value() returns trigger
language plpgsql as $$
begin
    if new.event_ts < old.event_ts
        or (new.event_ts = old.event_ts and new.created_ts < old.created_ts) then
        return null;
    end if;
    return new;
end;
$$
"""
KEEP_NEWEST_TRIGGER = "keep_newest_online_value"


def install_keep_newest_triggers(store: FeatureStore) -> list[OnlineTable]:
    """Put the keep-newest trigger on every online table (idempotent)."""
    tables = online_tables(store)
    if not tables:
        return tables
    schema = sql.Identifier(tables[0].schema)
    with psycopg.connect(online_settings(store).conninfo()) as conn:
        conn.execute(sql.SQL(_KEEP_NEWEST_FUNCTION).format(schema=schema))
        for table in tables:
            # drop + create rather than CREATE OR REPLACE TRIGGER, which needs
            # PostgreSQL 14; both run in this one transaction.
            conn.execute(
                sql.SQL("drop trigger if exists {trigger} on {table}").format(
                    trigger=sql.Identifier(KEEP_NEWEST_TRIGGER),
                    table=table.identifier,
                )
            )
            conn.execute(
                sql.SQL(
                    "create trigger {trigger} before update on {table} for each row "
                    "execute function {schema}.keep_newest_online_value()"
                ).format(
                    trigger=sql.Identifier(KEEP_NEWEST_TRIGGER),
                    table=table.identifier,
                    schema=schema,
                )
            )
    logger.info("keep-newest trigger on %s", ", ".join(map(str, tables)))
    return tables


def online_settings(store: FeatureStore) -> PgSettings:
    online = store.config.online_store
    return PgSettings(
        host=online.host,
        port=int(online.port),
        user=online.user,
        password=online.password,
        dbname=online.database,
        local_cluster=False,
    )


# --- the TTL rule -------------------------------------------------------------
# Feast's offline join takes a snapshot for an entity time t only when
# t - ttl <= event_ts <= t. Its online read ignores TTL, so every online reader
# of this project (debug script, skew check, the service) applies the same
# window at platform_now(): a value outside it is reported as expired, not
# served as present.


def is_servable(event_ts: datetime, ttl: timedelta, now: datetime) -> bool:
    """True when a value stamped `event_ts` may be served at `now`."""
    if ttl <= timedelta(0):  # Feast's convention: 0 means the value never expires
        return event_ts <= now
    return now - ttl <= event_ts <= now


@dataclass(frozen=True)
class ServiceFeature:
    view: str
    name: str
    ttl: timedelta


def service_features(store: FeatureStore, service_name: str) -> list[ServiceFeature]:
    """The service's features, view by view, in the dbt contract's column order
    (Feast keeps a view's schema unordered)."""
    service = store.get_feature_service(service_name, allow_cache=False)
    features = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        order = {name: i for i, name in enumerate(_dbt_column_order(view))}
        names = sorted(
            (f.name for f in projection.features),
            key=lambda n: order.get(n, len(order)),
        )
        features.extend(ServiceFeature(view.name, name, view.ttl) for name in names)
    return features


def _dbt_column_order(view: FeatureView) -> list[str]:
    contract = repo_module("dbt_contract")
    return list(contract.model(view.tags["dbt_model"]).columns)


@dataclass
class OnlineRow:
    user_id: str
    values: dict[str, Any]
    event_ts: dict[str, datetime | None]  # by view
    expired_views: list[str]

    @property
    def found(self) -> bool:
        return any(ts is not None for ts in self.event_ts.values())


def read_online(
    store: FeatureStore,
    user_ids: Sequence[str],
    now: datetime,
    service_name: str = FEATURE_SERVICE,
) -> list[OnlineRow]:
    """Online features of `user_ids`, with values past their TTL at `now` set to
    None and their views listed in `expired_views`."""
    features = service_features(store, service_name)
    service = store.get_feature_service(service_name)
    response = store.get_online_features(
        features=service, entity_rows=[{"user_id": u} for u in user_ids]
    ).to_dict(include_event_timestamps=True)
    rows = []
    for i, user_id in enumerate(user_ids):
        values: dict[str, Any] = {}
        stamps: dict[str, datetime | None] = {}
        expired: list[str] = []
        for feature in features:
            value = response[feature.name][i]
            seconds = response[f"{feature.name}__ts"][i]
            # Feast reports a missing row with timestamp 0.
            stamp = datetime.fromtimestamp(seconds, UTC) if seconds else None
            stamps.setdefault(feature.view, stamp)
            if stamp is not None and not is_servable(stamp, feature.ttl, now):
                value = None
                if feature.view not in expired:
                    expired.append(feature.view)
            values[feature.name] = value
        rows.append(OnlineRow(user_id, values, stamps, expired))
    return rows


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def configure_cli_logging(verbose: bool = False) -> None:
    """Log format for the command-line entry points: time, level, origin."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Feast's PostgreSQL offline store reads the entity schema with pandas over
    # a psycopg connection, which works but makes pandas warn on every run.
    warnings.filterwarnings(
        "ignore", message="pandas only supports SQLAlchemy", category=UserWarning
    )
