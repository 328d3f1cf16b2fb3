"""Feature services: what each model version reads, online and offline."""

from feast import FeatureService

from feature_views import (
    payments_agg_90d_fv,
    subs_profile_fv,
    support_agg_90d_fv,
    usage_agg_30d_fv,
)
from ownership import OWNER, tags

churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[
        subs_profile_fv,
        usage_agg_30d_fv,
        payments_agg_90d_fv,
        support_agg_90d_fv,
    ],
    description="All 14 snapshot features the churn model v1 was trained on.",
    owner=OWNER,
    tags=tags(model="churn", model_version="1"),
)
