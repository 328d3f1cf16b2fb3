"""Feature views over the dbt snapshot models.

Each view lists the columns it serves; their types and descriptions come from
the dbt contract, and a listed column missing from dbt fails at import.
"""

from datetime import timedelta

from feast import FeatureView

from data_sources import (
    payments_agg_90d_snapshots_source,
    subscriptions_profile_snapshots_source,
    support_agg_90d_snapshots_source,
    usage_agg_30d_snapshots_source,
)
from dbt_contract import model
from entities import user
from ownership import OWNER, tags

# Snapshots arrive once a month, so consecutive ones are at most 31 days apart;
# 14 more days absorb a late ingest. After 45 days without a newer snapshot the
# value is stale: training gets null and the service must not serve it.
SNAPSHOT_TTL = timedelta(days=31 + 14)


def _snapshot_view(
    name: str, model_name: str, source, columns: list[str], description: str
) -> FeatureView:
    dbt_model = model(model_name)
    context = f"feature view {name}"
    return FeatureView(
        name=name,
        entities=[user],
        ttl=SNAPSHOT_TTL,
        # The join key is listed too: otherwise Feast infers it during apply
        # and every later comparison with the registry sees a difference.
        schema=dbt_model.features_for([user.join_key], context=context)
        + dbt_model.features_for(columns, context=context),
        source=source,
        online=True,
        description=description,
        owner=OWNER,
        tags=tags(dbt_model=model_name, refresh="monthly"),
    )


subs_profile_fv = _snapshot_view(
    "subs_profile_fv",
    "subscriptions_profile_snapshots",
    subscriptions_profile_snapshots_source,
    [
        "months_active",
        "monthly_fee",
        "paperless_billing",
        "plan_stream_tv",
        "plan_stream_movies",
        "net_service",
    ],
    "Subscription profile of a user at the month's as-of date.",
)

usage_agg_30d_fv = _snapshot_view(
    "usage_agg_30d_fv",
    "usage_agg_30d_snapshots",
    usage_agg_30d_snapshots_source,
    [
        "watch_hours_30d",
        "avg_session_mins_7d",
        "unique_devices_30d",
        "skips_7d",
        "rebuffer_events_7d",
    ],
    "Viewing behaviour over the 7 and 30 days before the as-of date.",
)

payments_agg_90d_fv = _snapshot_view(
    "payments_agg_90d_fv",
    "payments_agg_90d_snapshots",
    payments_agg_90d_snapshots_source,
    ["failed_payments_90d"],
    "Payment failures over the 90 days before the as-of date.",
)

support_agg_90d_fv = _snapshot_view(
    "support_agg_90d_fv",
    "support_agg_90d_snapshots",
    support_agg_90d_snapshots_source,
    ["support_tickets_90d", "ticket_avg_resolution_hrs_90d"],
    "Support tickets and their resolution time over the 90 days before as-of.",
)
