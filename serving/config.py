"""Service settings, read once from the environment.

HOST/PORT/WORKERS follow the Makefile; the rest carry a SERVING_ prefix so they
cannot collide with anything else in a deployment's environment. PostgreSQL
comes from the PG* variables through scripts.settings, like every other part
of the platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scripts.clock import NOW_ENV, parse_instant
from scripts.settings import PgSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class ServingSettings:
    host: str
    port: int
    workers: int
    # Largest POST /features batch; beyond it the answer is 413. 500 users read
    # in one query stay well under a megabyte of rows and ~50 ms.
    batch_max: int
    # Connections per worker. Each request holds one for a single round trip,
    # so a few per worker keep PostgreSQL busy without queueing in the pool.
    pool_size: int
    # How long a request waits for a pooled connection before answering 503.
    pool_timeout_s: float
    # Sent as Retry-After with every 503.
    retry_after_s: int
    # How long a worker may take to import Feast and open its resources.
    worker_start_timeout_s: float
    feature_repo: Path
    default_feature_service: str
    pg: PgSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if env is None else env
        # The clock is read on every request; a bad value must stop the
        # service here rather than answer every feature request with a 500.
        now_text = env.get(NOW_ENV, "")
        if now_text.strip():
            try:
                parse_instant(now_text)
            except ValueError as error:
                raise SettingsError(str(error)) from None
        repo = env.get("SERVING_FEATURE_REPO") or str(REPO_ROOT / "feature_repo")
        return cls(
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8000, 0),
            workers=_int(env, "WORKERS", 1, 1),
            batch_max=_int(env, "SERVING_BATCH_MAX", 500, 1),
            pool_size=_int(env, "SERVING_POOL_SIZE", 4, 1),
            pool_timeout_s=_float(env, "SERVING_POOL_TIMEOUT", 2.0),
            retry_after_s=_int(env, "SERVING_RETRY_AFTER", 2, 1),
            worker_start_timeout_s=_float(env, "SERVING_WORKER_START_TIMEOUT", 180.0),
            feature_repo=Path(repo),
            default_feature_service=env.get("SERVING_FEATURE_SERVICE")
            or "churn_model_v1",
            pg=PgSettings.from_env(env),
        )
