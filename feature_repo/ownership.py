"""Owner and tags shared by every Feast object of the StreamFlow repository."""

OWNER = "feature-platform@streamflow.example"


def tags(**extra: str) -> dict[str, str]:
    """Tags every object carries, plus the object's own."""
    return {"team": "feature-platform", "source": "dbt", **extra}
