"""What can be served, resolved once per worker from the Feast registry.

Feast's own online read looks the feature service up, re-resolves its views
and rebuilds the entity keys on every call; profiling `feast serve` put about
1.7 ms of CPU per request there. None of that changes between `make apply`
runs, so a worker resolves it at startup into plain tuples and a ready-made
SQL statement per selection, and a request only validates its input against
them.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from psycopg import sql

logger = logging.getLogger(__name__)

# Ad-hoc `?features=` selections are cached by their text; the bound keeps a
# client that sends endless variations from growing a worker's memory.
MAX_CACHED_SELECTIONS = 256
# Feast's entity-key layout writes lengths as little-endian uint32.
_LENGTH = struct.Struct("<I")


class SelectionError(ValueError):
    """A request asked for a feature service or feature that does not exist."""


@dataclass(frozen=True)
class ViewInfo:
    """One feature view as the fast path needs it."""

    name: str
    table: str
    join_key: str
    # None means the view never expires (Feast's ttl of 0).
    ttl: timedelta | None
    features: tuple[str, ...]


@dataclass(frozen=True)
class ViewRead:
    """The features a selection takes from one view, with their output names."""

    view: ViewInfo
    # stored feature name -> key in the response's "features" object
    outputs: dict[str, str]


@dataclass(frozen=True)
class Selection:
    """A resolved request shape: which views, which features, one SQL text."""

    feature_service: str | None
    reads: tuple[ViewRead, ...]
    output_names: tuple[str, ...]
    join_key: str
    # One round trip for every view: a UNION ALL of the views' online tables,
    # tagged with the view's position in `reads`, filtered by %(keys)s only.
    # Rendered to text once: psycopg re-renders a Composed on every execute
    # (about 100 us per request), while a str query hits its parse cache.
    query: str = field(repr=False)

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(read.view.name for read in self.reads)


def _build_query(reads: Iterable[ViewRead]) -> str:
    parts = [
        # event_ts as integer microseconds since the epoch: loading timestamptz
        # into datetime objects was a third of the client CPU of a 100-user
        # batch, and an integer compares with the TTL cutoff just as well. A
        # row without event_ts (Feast always writes one) counts as expired.
        # %(keys)b sends the key array in binary; the text form escapes every
        # byte of every key in Python.
        sql.SQL(
            "select {position}::int2, entity_key, feature_name, value,"
            " coalesce((extract(epoch from event_ts) * 1000000)::int8, 0)"
            " from {table} where entity_key = any(%(keys)b)"
        ).format(position=sql.Literal(position), table=sql.Identifier(read.view.table))
        for position, read in enumerate(reads)
    ]
    # Identifiers and literals quote without a connection (no encoding-
    # dependent parts), so the statement can be rendered before any connects.
    return sql.SQL(" union all ").join(parts).as_string()


class FeatureCatalog:
    """Feature views and services of one Feast project, frozen at startup."""

    def __init__(
        self,
        project: str,
        views: dict[str, ViewInfo],
        services: dict[str, list[tuple[str, list[str]]]],
        entity_key_serialization_version: int,
    ) -> None:
        self.project = project
        self.views = views
        self.entity_key_serialization_version = entity_key_serialization_version
        self.services: dict[str, Selection] = {
            name: self._resolve(name, parts) for name, parts in services.items()
        }
        self._adhoc: dict[str, Selection] = {}
        self._key_prefixes = {
            join_key: self._learn_key_prefix(join_key)
            for join_key in {view.join_key for view in views.values()}
        }

    @classmethod
    def from_store(cls, store: FeatureStore) -> FeatureCatalog:
        config = store.config
        versioning = bool(
            getattr(config.registry, "enable_online_feature_view_versioning", False)
        )
        views = {
            view.name: _view_info(config.project, view, versioning)
            for view in store.list_feature_views()
        }
        services = {
            service.name: [
                (projection.name, [feature.name for feature in projection.features])
                for projection in service.feature_view_projections
            ]
            for service in store.list_feature_services()
        }
        catalog = cls(
            config.project, views, services, config.entity_key_serialization_version
        )
        logger.info(
            "resolved %d feature views and %d feature services of project %s",
            len(views),
            len(services),
            config.project,
        )
        return catalog

    # --- selections -----------------------------------------------------------

    def service(self, name: str) -> Selection:
        try:
            return self.services[name]
        except KeyError:
            valid = ", ".join(sorted(self.services)) or "(none registered)"
            raise SelectionError(
                f"unknown feature service {name!r}; valid feature services: {valid}"
            ) from None

    def adhoc(self, text: str) -> Selection:
        """A selection from `view:feature,view:feature,...`."""
        cached = self._adhoc.get(text)
        if cached is not None:
            return cached
        wanted: dict[str, list[str]] = {}
        for item in text.split(","):
            ref = item.strip()
            view_name, colon, feature = ref.partition(":")
            view = self.views.get(view_name)
            if not colon or view is None or feature not in view.features:
                raise SelectionError(
                    f"unknown feature {ref!r}; valid features (view:feature): "
                    + ", ".join(self.feature_refs())
                )
            if feature not in wanted.setdefault(view_name, []):
                wanted[view_name].append(feature)
        selection = self._resolve(None, list(wanted.items()))
        if len(self._adhoc) >= MAX_CACHED_SELECTIONS:
            self._adhoc.clear()
        self._adhoc[text] = selection
        return selection

    def feature_refs(self) -> list[str]:
        return [
            f"{view.name}:{feature}"
            for view in self.views.values()
            for feature in view.features
        ]

    def _resolve(
        self, service: str | None, parts: list[tuple[str, list[str]]]
    ) -> Selection:
        names = [feature for _, features in parts for feature in features]
        # Plain feature names as in the course's response, unless two views
        # share a name; then every key is prefixed like Feast's full names.
        collide = len(set(names)) != len(names)
        reads = []
        for view_name, features in parts:
            view = self.views[view_name]
            outputs = {
                feature: f"{view_name}__{feature}" if collide else feature
                for feature in features
            }
            reads.append(ViewRead(view, outputs))
        join_keys = {read.view.join_key for read in reads}
        if len(join_keys) != 1:
            raise SelectionError(
                "a selection must use views of one entity; got join keys "
                + ", ".join(sorted(join_keys))
            )
        return Selection(
            feature_service=service,
            reads=tuple(reads),
            output_names=tuple(
                output for read in reads for output in read.outputs.values()
            ),
            join_key=join_keys.pop(),
            query=_build_query(reads),
        )

    # --- entity keys ----------------------------------------------------------

    def entity_key(self, join_key: str, user_id: str) -> bytes:
        """The bytes Feast stored in entity_key for this id."""
        prefix = self._key_prefixes.get(join_key)
        if prefix is None:
            return self._feast_entity_key(join_key, user_id)
        encoded = user_id.encode()
        return prefix + _LENGTH.pack(len(encoded)) + encoded

    def _feast_entity_key(self, join_key: str, user_id: str) -> bytes:
        proto = EntityKeyProto(
            join_keys=[join_key], entity_values=[ValueProto(string_val=user_id)]
        )
        return serialize_entity_key(
            proto,
            entity_key_serialization_version=self.entity_key_serialization_version,
        )

    def _learn_key_prefix(self, join_key: str) -> bytes | None:
        """For one string join key, Feast's encoding is a constant prefix, the
        id's UTF-8 length and the id. Feast's encoder costs ~20 us per key
        (a protobuf message per id); learn the prefix from it once and check
        it on sample ids, keeping Feast's encoder if any sample disagrees (a
        future serialization version, say)."""
        probe = self._feast_entity_key(join_key, "x")
        tail = _LENGTH.pack(1) + b"x"
        if not probe.endswith(tail):
            return None
        prefix = probe[: -len(tail)]
        for sample in ("7590-VHVEG", "", "é" * 40, "a,b;c d"):
            encoded = sample.encode()
            guess = prefix + _LENGTH.pack(len(encoded)) + encoded
            if guess != self._feast_entity_key(join_key, sample):
                logger.warning(
                    "entity keys of %s do not follow the known layout; "
                    "using Feast's encoder per request",
                    join_key,
                )
                return None
        return prefix

    def describe(self) -> dict[str, object]:
        """The body of GET /feature-services."""
        return {
            "project": self.project,
            "feature_services": {
                name: {
                    "views": list(selection.view_names),
                    "features": [
                        f"{read.view.name}:{feature}"
                        for read in selection.reads
                        for feature in read.outputs
                    ],
                }
                for name, selection in sorted(self.services.items())
            },
            "feature_views": {
                view.name: {
                    "entity": view.join_key,
                    "ttl_seconds": int(view.ttl.total_seconds()) if view.ttl else None,
                    "features": list(view.features),
                }
                for view in self.views.values()
            },
        }


def _view_info(project: str, view: FeatureView, versioning: bool) -> ViewInfo:
    if len(view.entity_columns) != 1:
        raise ValueError(
            f"feature view {view.name} has {len(view.entity_columns)} join keys; "
            "the service reads views of exactly one entity"
        )
    entity = view.entity_columns[0]
    if entity.dtype.to_value_type() != ValueType.STRING:
        raise ValueError(
            f"feature view {view.name}: join key {entity.name} is "
            f"{entity.dtype}; the service serves string ids only"
        )
    ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
    return ViewInfo(
        name=view.name,
        table=compute_table_id(project, view, versioning),
        join_key=entity.name,
        ttl=ttl,
        features=tuple(feature.name for feature in view.features),
    )
