"""The Feast definitions against the dbt project they are built from (no database).

The drift tests edit a copy of dbt_project/ and check that the disagreement is
reported with the YAML file and line, as `feast apply` would fail on it.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from feast.types import Bool, Float64, Int32, String

from scripts.feast_store import REPO_ROOT, load_definitions, repo_module

contract = repo_module("dbt_contract")
MARTS_YAML = Path("models") / "marts" / "_marts__models.yml"


@pytest.fixture(scope="module")
def repo():
    return load_definitions("streamflow")


@pytest.fixture(scope="module")
def views(repo):
    return {view.name: view for view in repo.feature_views}


@pytest.fixture
def dbt_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project",
        copy,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_views_serve_the_fourteen_features_typed_by_dbt(views):
    fields = {f.name: f.dtype for view in views.values() for f in view.features}
    assert len(fields) == 14
    assert fields["monthly_fee"] == Float64  # 29.85 stays 29.85
    assert fields["ticket_avg_resolution_hrs_90d"] == Float64
    assert fields["months_active"] == Int32
    assert fields["paperless_billing"] == Bool
    assert fields["net_service"] == String
    assert set(views) == {
        "subs_profile_fv",
        "usage_agg_30d_fv",
        "payments_agg_90d_fv",
        "support_agg_90d_fv",
    }


def test_feature_service_holds_every_view(repo):
    (service,) = repo.feature_services
    assert service.name == "churn_model_v1"
    served = {f.name for p in service.feature_view_projections for f in p.features}
    assert len(served) == 14


def test_ttl_is_45_days_on_every_view(views):
    assert {view.ttl for view in views.values()} == {timedelta(days=45)}


def test_every_object_is_described_owned_and_tagged(repo):
    objects = [
        *repo.data_sources,
        *[e for e in repo.entities if e.name != "__dummy"],
        *repo.feature_views,
        *repo.feature_services,
    ]
    for obj in objects:
        assert obj.description, obj.name
        assert obj.owner, obj.name
        assert obj.tags.get("team"), obj.name
    for view in repo.feature_views:
        assert all(f.description for f in view.features), view.name


def test_sources_read_the_dbt_tables(repo):
    tables = {s.get_table_query_string() for s in repo.data_sources}
    assert "features.subscriptions_profile_snapshots" in tables
    assert "features.labels_snapshots" in tables
    assert {s.timestamp_field for s in repo.data_sources} == {"as_of"}


def test_no_drift_against_the_dbt_project(views):
    assert contract.drift(list(views.values())) == []


def test_renamed_dbt_column_is_drift(views, dbt_copy):
    edit(dbt_copy / MARTS_YAML, "- name: monthly_fee", "- name: monthly_fee_usd")
    problems = contract.drift(list(views.values()), dbt_copy)
    assert len(problems) == 1
    assert "monthly_fee is not a column" in problems[0]
    assert "_marts__models.yml:" in problems[0]

    # Building the definitions from that copy fails the same way, naming the
    # file, the line and the model.
    model = contract.load_models(dbt_copy)["subscriptions_profile_snapshots"]
    with pytest.raises(contract.DbtContractError, match=r"_marts__models\.yml:\d+"):
        model.features_for(["monthly_fee"], context="feature view subs_profile_fv")


def test_changed_dbt_type_is_drift(views, dbt_copy):
    yaml_path = dbt_copy / MARTS_YAML
    text = yaml_path.read_text()
    start = text.index("- name: watch_hours_30d")
    end = text.index("data_type: double precision", start)
    yaml_path.write_text(text[:end] + "data_type: real" + text[end + 27 :])
    problems = contract.drift(list(views.values()), dbt_copy)
    assert problems and "watch_hours_30d" in problems[0] and "'real'" in problems[0]
    model = contract.load_models(dbt_copy)["usage_agg_30d_snapshots"]
    with pytest.raises(contract.DbtContractError, match="cannot serve exactly"):
        model.features_for(["watch_hours_30d"], context="test")


def test_renamed_dbt_model_is_drift(views, dbt_copy):
    edit(
        dbt_copy / MARTS_YAML,
        "- name: payments_agg_90d_snapshots",
        "- name: payment_failures",
    )
    problems = contract.drift(list(views.values()), dbt_copy)
    assert problems == [
        "view payments_agg_90d_fv: dbt model "
        + "'payments_agg_90d_snapshots' not found"
    ]


def test_changed_description_is_drift(views, dbt_copy):
    model = contract.load_models()["support_agg_90d_snapshots"]
    old = model.columns["support_tickets_90d"].description.split()[0]
    yaml_path = dbt_copy / MARTS_YAML
    text = yaml_path.read_text()
    start = text.index("- name: support_tickets_90d")
    at = text.index(old, start)
    yaml_path.write_text(text[:at] + "Renamed " + text[at:])
    problems = contract.drift(list(views.values()), dbt_copy)
    assert problems and "description of support_tickets_90d" in problems[0]
