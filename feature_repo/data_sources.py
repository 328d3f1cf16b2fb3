"""Batch sources: one PostgreSQL table per dbt snapshot model.

Table names, descriptions and the event-time column come from the dbt YAML
(dbt_contract.py), so renaming a model or its `as_of` column in dbt breaks
`feast apply` with the YAML line instead of a query error at training time.
"""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)

from dbt_contract import DbtModel, model
from ownership import OWNER, tags

# Every snapshot model stamps its rows with the month's as-of instant (00:00 UTC).
EVENT_TIME_COLUMN = "as_of"
# ...and with the instant its month was ingested. Feast copies it into the online
# store's created_ts, which is how `make materialize` notices a month that was
# ingested again after it was materialized (same as_of, corrected values).
LOADED_AT_COLUMN = "loaded_at"


def _snapshot_source(model_name: str) -> PostgreSQLSource:
    dbt_model: DbtModel = model(model_name)
    context = f"source {model_name}"
    dbt_model.timestamp_column(EVENT_TIME_COLUMN, context=context)
    dbt_model.timestamp_column(LOADED_AT_COLUMN, context=context)
    return PostgreSQLSource(
        name=f"{model_name}_source",
        table=dbt_model.relation,
        timestamp_field=EVENT_TIME_COLUMN,
        created_timestamp_column=LOADED_AT_COLUMN,
        description=dbt_model.description,
        owner=OWNER,
        tags=tags(dbt_model=dbt_model.name),
    )


users_snapshots_source = _snapshot_source("users_snapshots")
subscriptions_profile_snapshots_source = _snapshot_source(
    "subscriptions_profile_snapshots"
)
usage_agg_30d_snapshots_source = _snapshot_source("usage_agg_30d_snapshots")
payments_agg_90d_snapshots_source = _snapshot_source("payments_agg_90d_snapshots")
support_agg_90d_snapshots_source = _snapshot_source("support_agg_90d_snapshots")
# Not a feature source: the training set reads the label of each month from it.
labels_snapshots_source = _snapshot_source("labels_snapshots")
