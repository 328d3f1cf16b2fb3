"""The per-request fast path: one SQL round trip, then ValueProto decoding.

Feast's PostgreSQL online store keeps one row per (entity_key, feature_name)
in `<project>_<view>` with the value as a serialized ValueProto and its
event_ts. We read those rows directly through a pool, with the statement that
the catalog built at startup; the only thing a request contributes to the
query is the array of entity keys, sent as a parameter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from scripts.clock import platform_now
from serving.catalog import FeatureCatalog, Selection

logger = logging.getLogger(__name__)

# ValueProto scalar kinds whose Python value is already JSON-ready.
_SCALARS = frozenset(
    {"string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val"}
)


# Serialized values repeat a lot (booleans, small counts, plan names, shared
# timestamps): a bounded memo of bytes -> decoded scalar skips most protobuf
# parsing. Cleared when full rather than LRU-managed, which costs nothing per hit.
_DECODED_MAX = 100_000
_decoded: dict[bytes, object] = {}
_MISSING = object()
_iso_texts: dict[int, str] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class StoreUnavailable(Exception):
    """The online store could not be read (down, restarting, or not built)."""


@dataclass
class UserFeatures:
    """One user's answer. `found` is False when no selected view has a row."""

    user_id: str
    found: bool
    features: dict[str, object]
    as_of: dict[str, str | None]
    # view -> event time of the rows withheld because they outlived the TTL
    expired: dict[str, str]
    # view -> event time of rows withheld because they are later than the
    # platform clock (a replayed NOW behind what was materialized)
    not_yet_valid: dict[str, str]

    def to_json(self, selection: Selection) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "feature_service": selection.feature_service,
            "features": self.features,
            "as_of": self.as_of,
            "expired": self.expired,
            "not_yet_valid": self.not_yet_valid,
        }


def _epoch_us(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


def _iso(epoch_us: int) -> str:
    # Materializations write a handful of distinct instants; format each once
    # per worker.
    text = _iso_texts.get(epoch_us)
    if text is None:
        if len(_iso_texts) >= _DECODED_MAX:
            _iso_texts.clear()
        text = _iso_texts[epoch_us] = (
            _EPOCH + timedelta(microseconds=epoch_us)
        ).isoformat()
    return text


def decode_value(raw: bytes) -> object:
    """A stored ValueProto as a JSON value: an unset or null value is None."""
    cached = _decoded.get(raw, _MISSING)
    if cached is not _MISSING:
        return cached
    value = ValueProto.FromString(raw)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        result: object = None
    elif kind in _SCALARS:
        result = getattr(value, kind)
    elif kind.endswith(("_list_val", "_set_val")):
        # Lists are mutable: never shared through the cache.
        return list(getattr(value, kind).val)
    elif kind == "unix_timestamp_val":
        result = datetime.fromtimestamp(value.unix_timestamp_val, UTC).isoformat()
    else:
        # Bytes, maps and structs do not occur in this project's views; say
        # so rather than guess at an encoding.
        result = f"<{kind} not supported by the service>"
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    _decoded[raw] = result
    return result


class OnlineReader:
    """Reads selections for batches of user ids through a psycopg pool."""

    def __init__(
        self, catalog: FeatureCatalog, pool: AsyncConnectionPool, read_timer=None
    ) -> None:
        self.catalog = catalog
        self.pool = pool
        # prometheus Histogram (or None in tools that do not export metrics)
        self.read_timer = read_timer
        self._check_task: asyncio.Task | None = None

    async def fetch(
        self, selection: Selection, user_ids: Sequence[str]
    ) -> list[UserFeatures]:
        """Answers in the order of `user_ids` (duplicates allowed)."""
        join_key = selection.join_key
        key_of = {uid: self.catalog.entity_key(join_key, uid) for uid in user_ids}
        rows = await self._read(selection, list(set(key_of.values())))

        now = platform_now()
        now_us = _epoch_us(now)
        # Per view position: wanted features, view name, TTL cutoff (in epoch
        # microseconds, like the event times the query returns).
        plans = [
            (
                read.outputs,
                read.view.name,
                _epoch_us(now - read.view.ttl) if read.view.ttl is not None else None,
            )
            for read in selection.reads
        ]
        # entity key -> (values by output name, then fresh, expired and
        # not-yet-valid event times by view)
        by_key: dict[bytes, tuple[dict, dict, dict]] = {}
        for position, entity_key, name, raw, event_ts in rows:
            entry = by_key.get(entity_key)
            if entry is None:
                entry = by_key[entity_key] = ({}, {}, {}, {})
            outputs, view, cutoff = plans[position]
            output = outputs.get(name)
            if output is None:
                continue
            if cutoff is not None and event_ts < cutoff:
                entry[2][view] = event_ts
                continue
            if event_ts > now_us:
                # Never serve a value from after "now": offline, Feast would
                # not have joined it at this instant either.
                entry[3][view] = event_ts
                continue
            entry[0][output] = decode_value(raw)
            seen = entry[1].get(view)
            if seen is None or event_ts > seen:
                entry[1][view] = event_ts

        views = [plan[1] for plan in plans]
        answers = []
        for uid in user_ids:
            entry = by_key.get(key_of[uid])
            features = dict.fromkeys(selection.output_names)
            as_of: dict[str, str | None] = dict.fromkeys(views)
            if entry is None:
                answers.append(UserFeatures(uid, False, features, as_of, {}, {}))
                continue
            values, fresh, stale, future = entry
            features.update(values)
            for view, event_ts in fresh.items():
                as_of[view] = _iso(event_ts)
            expired = {
                view: _iso(event_ts)
                for view, event_ts in stale.items()
                if view not in fresh
            }
            not_yet_valid = {
                view: _iso(event_ts)
                for view, event_ts in future.items()
                if view not in fresh
            }
            answers.append(
                UserFeatures(uid, True, features, as_of, expired, not_yet_valid)
            )
        return answers

    async def _read(self, selection: Selection, keys: list[bytes]) -> list[tuple]:
        started = time.perf_counter()
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    selection.query, {"keys": keys}, prepare=True, binary=True
                )
                rows = await cursor.fetchall()
        except PoolTimeout as error:
            raise StoreUnavailable(
                "no connection to the online store within the pool timeout"
            ) from error
        except psycopg.errors.UndefinedTable as error:
            raise StoreUnavailable(
                f"the online store has no table for {', '.join(selection.view_names)}"
                " (run make apply materialize)"
            ) from error
        except psycopg.OperationalError as error:
            # The connection broke (server restarted or went away). The pool
            # drops it on return; check the idle ones too so that the next
            # requests do not each discover a dead connection the hard way.
            self._schedule_pool_check()
            raise StoreUnavailable(f"online store unreachable: {error}") from error
        finally:
            if self.read_timer is not None:
                self.read_timer.observe(time.perf_counter() - started)
        return rows

    def _schedule_pool_check(self) -> None:
        if self._check_task is not None and not self._check_task.done():
            return
        self._check_task = asyncio.get_running_loop().create_task(self._check_pool())

    async def _check_pool(self) -> None:
        try:
            await self.pool.check()
        except Exception:  # a failed check is simply retried on the next error
            logger.warning("checking the online-store pool failed", exc_info=True)
