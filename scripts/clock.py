"""The platform clock: the instant StreamFlow treats as "now".

TTL checks (debug, skew check, the service) and the default end of
materialization all use it, so a replay of the course months can pretend to run
on 2024-03-01 by setting STREAMFLOW_NOW, while production leaves it unset and
gets the wall clock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

NOW_ENV = "STREAMFLOW_NOW"


def parse_instant(text: str, *, what: str = NOW_ENV) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC datetime.

    A value without an offset is taken as UTC, the platform's only time zone.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{what} must be an ISO-8601 date or date-time such as "
            f"2024-03-01T00:00:00+00:00, got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:00-05:00 is a valid local time past datetime's range.
        raise ValueError(f"{what} is out of range once in UTC, got {text!r}") from None


def platform_now(env: Mapping[str, str] | None = None) -> datetime:
    """STREAMFLOW_NOW when set (and not empty), else the wall clock, in UTC."""
    env = os.environ if env is None else env
    text = env.get(NOW_ENV, "")
    if text.strip():
        return parse_instant(text)
    return datetime.now(UTC)
