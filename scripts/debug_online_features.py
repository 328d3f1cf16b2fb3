"""Print one user's online features: `python scripts/debug_online_features.py USER_ID`.

Reads through Feast with the churn model's feature service, as the service
does, and applies the project's TTL rule at platform_now(): a value older than
its view's TTL is shown as None and marked expired. An unknown user prints its
None values and says it was not found (exit status 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file: make the repository root importable for `scripts.*`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.clock import platform_now  # noqa: E402
from scripts.feast_store import (  # noqa: E402
    FEATURE_SERVICE,
    configure_cli_logging,
    open_store,
    read_online,
    service_features,
)
from scripts.settings import PgSettings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user_id")
    parser.add_argument("--feature-service", default=FEATURE_SERVICE)
    args = parser.parse_args(argv)
    configure_cli_logging()

    try:
        now = platform_now()
    except ValueError as exc:
        sys.stderr.write(f"debug_online_features: {exc}\n")
        return 2
    store = open_store(PgSettings.from_env())
    known = sorted(service.name for service in store.list_feature_services())
    if args.feature_service not in known:
        sys.stderr.write(
            f"debug_online_features: unknown feature service "
            f"{args.feature_service!r}; registered: {', '.join(known) or 'none'}\n"
        )
        return 2
    (row,) = read_online(store, [args.user_id], now, args.feature_service)
    features = service_features(store, args.feature_service)

    print(f"user_id: {row.user_id}")
    print(f"feature service: {args.feature_service}   platform now: {now.isoformat()}")
    width = max(len(f.name) for f in features)
    for feature in features:
        stamp = row.event_ts.get(feature.view)
        if stamp is None:
            note = "no online row"
        elif feature.view in row.expired_views and stamp > now:
            note = f"WITHHELD: as_of {stamp.isoformat()} is later than platform now"
        elif feature.view in row.expired_views:
            note = (
                f"EXPIRED: as_of {stamp.isoformat()} is older than now - {feature.ttl}"
            )
        else:
            note = f"as_of {stamp.isoformat()}"
        value = row.values[feature.name]
        print(f"  {feature.name:<{width}}  {value!r:<22} {feature.view}, {note}")
    if not row.found:
        print(f"user {row.user_id!r} not found in the online store")
        return 1
    if row.expired_views:
        print(f"expired views (TTL passed at platform now): {row.expired_views}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
