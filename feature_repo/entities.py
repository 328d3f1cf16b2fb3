"""Entities: who the features describe."""

from feast import Entity, ValueType

from dbt_contract import model
from ownership import OWNER, tags

# The join key is described once, in the dbt labels model every month carries.
_user_id = model("labels_snapshots").column("user_id", context="entity user")

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description=f"A StreamFlow subscriber. {_user_id.description}".strip(),
    owner=OWNER,
    tags=tags(domain="subscribers"),
)
