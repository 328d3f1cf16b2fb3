"""The feature service through Sanic's test client, on a store built by the
project's own chain (ingest -> dbt -> apply -> materialize)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from feast import FeatureStore

from scripts.settings import PgSettings
from serving.app import Resources, close_store, create_app, load_catalog, open_pool
from serving.catalog import FeatureCatalog
from serving.config import ServingSettings, SettingsError
from tests.serving_fixtures import PLATFORM_NOW, build_serving_store, chain_env

pytestmark = pytest.mark.slow

USER = "7590-VHVEG"
DEFAULT_SERVICE = "churn_model_v1"
ALL_VIEWS = ["subs_profile_fv", "usage_agg_30d_fv", "payments_agg_90d_fv",
             "support_agg_90d_fv"]  # fmt: skip


@dataclass
class Loaded:
    db: PgSettings
    settings: ServingSettings
    store: FeatureStore
    catalog: FeatureCatalog


@pytest.fixture(scope="module")
def serving_db(pg_settings: PgSettings, make_database) -> PgSettings:
    return build_serving_store(make_database)


@pytest.fixture(scope="module")
def loaded(serving_db: PgSettings) -> Iterator[Loaded]:
    saved = {key: os.environ.get(key) for key in serving_db.as_env()}
    settings = ServingSettings.from_env(chain_env(serving_db, SERVING_BATCH_MAX="150"))
    store, catalog = load_catalog(settings)
    yield Loaded(serving_db, settings, store, catalog)
    close_store(store)
    # load_catalog exported PG* for Feast; give the session its own back.
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def platform_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_NOW", PLATFORM_NOW)


Scenario = Callable[[Any], Awaitable[Any]]


def run(loaded: Loaded, scenario: Scenario, settings: ServingSettings | None = None):
    """Run `scenario(asgi_client)` against an app with a real pool."""
    settings = settings or loaded.settings

    async def main() -> Any:
        pool = await open_pool(settings, loaded.store)
        try:
            app = create_app(settings, Resources(loaded.store, loaded.catalog, pool))
            return await scenario(app.asgi_client)
        finally:
            await pool.close()

    return asyncio.run(main())


def get(loaded: Loaded, path: str, **kwargs):
    async def scenario(client):
        _, response = await client.get(path, **kwargs)
        return response

    return run(loaded, scenario)


def post(loaded: Loaded, path: str, body: Any):
    async def scenario(client):
        _, response = await client.post(path, json=body)
        return response

    return run(loaded, scenario)


def stored_row(db: PgSettings, table: str, user_id: str) -> dict[str, Any]:
    """The latest snapshot row of a user in a dbt mart, as the truth."""
    with psycopg.connect(db.conninfo()) as conn:
        cursor = conn.execute(
            f"select * from features.{table} where user_id = %s "  # noqa: S608
            "order by as_of desc limit 1",
            [user_id],
        )
        names = [column.name for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


# --- values -------------------------------------------------------------------


def test_user_values_are_served_as_stored(loaded: Loaded) -> None:
    response = get(loaded, f"/features/{USER}")
    assert response.status == 200
    body = response.json
    assert body["user_id"] == USER
    assert body["feature_service"] == DEFAULT_SERVICE
    features = body["features"]
    assert len(features) == 14
    # Exactly the JSON text 29.85, not 29.850000381469727.
    assert '"monthly_fee":29.85' in response.text
    assert features["monthly_fee"] == 29.85
    assert features["paperless_billing"] is True
    assert features["plan_stream_tv"] is False
    assert features["months_active"] == 1
    assert features["failed_payments_90d"] == 1
    assert features["net_service"] == "DSL"
    usage = stored_row(loaded.db, "usage_agg_30d_snapshots", USER)
    for name in ("watch_hours_30d", "avg_session_mins_7d", "skips_7d"):
        assert features[name] == usage[name]
    assert body["as_of"] == dict.fromkeys(ALL_VIEWS, "2024-02-29T00:00:00+00:00")
    assert body["expired"] == {}


def test_found_with_nulls_is_not_not_found(loaded: Loaded) -> None:
    with psycopg.connect(loaded.db.conninfo()) as conn:
        (user_id,) = conn.execute(
            "select user_id from features.subscriptions_profile_snapshots "
            "where plan_stream_tv is null and as_of = '2024-02-29' "
            "order by user_id limit 1"
        ).fetchone()
    response = get(loaded, f"/features/{user_id}")
    assert response.status == 200
    assert response.json["features"]["plan_stream_tv"] is None
    assert '"plan_stream_tv":null' in response.text
    assert response.json["features"]["monthly_fee"] is not None


def test_unknown_user_is_404_naming_the_user(loaded: Loaded) -> None:
    response = get(loaded, "/features/NO-SUCH-USER")
    assert response.status == 404
    error = response.json["error"]
    assert error["user_id"] == "NO-SUCH-USER"
    assert "NO-SUCH-USER" in error["message"]


def test_values_past_ttl_are_not_served(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 46 days after the last snapshot: every view's TTL (45 days) has passed.
    monkeypatch.setenv("STREAMFLOW_NOW", "2024-04-15T00:00:00+00:00")
    response = get(loaded, f"/features/{USER}")
    assert response.status == 200
    body = response.json
    assert set(body["features"].values()) == {None}
    assert body["as_of"] == dict.fromkeys(ALL_VIEWS)
    assert body["expired"] == dict.fromkeys(ALL_VIEWS, "2024-02-29T00:00:00+00:00")


def test_values_from_after_the_platform_clock_are_withheld(loaded, monkeypatch):
    # The store holds February's snapshot; replaying mid-February must not
    # serve it (offline, Feast would join January's there).
    monkeypatch.setenv("STREAMFLOW_NOW", "2024-02-15T00:00:00+00:00")
    body = get(loaded, f"/features/{USER}").json
    assert set(body["features"].values()) == {None}
    assert body["expired"] == {}
    assert body["not_yet_valid"] == dict.fromkeys(
        ALL_VIEWS, "2024-02-29T00:00:00+00:00"
    )


# --- selection ----------------------------------------------------------------


def test_feature_list_selection(loaded: Loaded) -> None:
    response = get(
        loaded,
        f"/features/{USER}",
        params={
            "features": "subs_profile_fv:monthly_fee,payments_agg_90d_fv:"
            "failed_payments_90d"
        },  # fmt: skip
    )
    assert response.status == 200
    body = response.json
    assert body["features"] == {"monthly_fee": 29.85, "failed_payments_90d": 1}
    assert body["feature_service"] is None
    assert list(body["as_of"]) == ["subs_profile_fv", "payments_agg_90d_fv"]


def test_named_feature_service(loaded: Loaded) -> None:
    response = get(
        loaded, f"/features/{USER}", params={"feature_service": DEFAULT_SERVICE}
    )
    assert response.status == 200
    assert response.json["feature_service"] == DEFAULT_SERVICE


@pytest.mark.parametrize(
    ("params", "listed"),
    [
        ({"feature_service": "nope_v9"}, DEFAULT_SERVICE),
        ({"features": "subs_profile_fv:nope"}, "subs_profile_fv:monthly_fee"),
        ({"features": "monthly_fee"}, "usage_agg_30d_fv:skips_7d"),
    ],
)
def test_unknown_selection_is_400_listing_valid_ones(
    loaded: Loaded, params: dict[str, str], listed: str
) -> None:
    response = get(loaded, f"/features/{USER}", params=params)
    assert response.status == 400
    assert listed in response.json["error"]["message"]


def test_feature_services_are_listed(loaded: Loaded) -> None:
    response = get(loaded, "/feature-services")
    assert response.status == 200
    body = response.json
    service = body["feature_services"][DEFAULT_SERVICE]
    assert service["views"] == ALL_VIEWS
    assert len(service["features"]) == 14
    assert body["feature_views"]["subs_profile_fv"]["ttl_seconds"] == 45 * 86400
    assert body["default_feature_service"] == DEFAULT_SERVICE


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/features/", "empty"),
        ("/features", "empty"),
        ("/features/" + "x" * 65, "65 characters"),
        ("/features/abc%0Adef", "control characters"),
        ("/features/abc%7Fdef", "control characters"),
    ],
)
def test_invalid_user_id_is_400(loaded: Loaded, path: str, fragment: str) -> None:
    response = get(loaded, path)
    assert response.status == 400
    assert fragment in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("features=", "features is empty; valid features (view:feature): "),
        ("features", "features is empty"),
        ("feature_service=", "feature_service is empty; valid feature services: "),
    ],
)
def test_empty_selection_is_400_not_the_default_service(
    loaded: Loaded, query: str, fragment: str
) -> None:
    # An empty selection used to be dropped as a blank query value, so the
    # caller got all 14 features of the default service instead of an error.
    response = get(loaded, f"/features/{USER}?{query}")
    assert response.status == 400
    assert fragment in response.json["error"]["message"]


def test_64_character_id_is_valid_input(loaded: Loaded) -> None:
    assert get(loaded, "/features/" + "x" * 64).status == 404


def test_unexpected_errors_carry_no_stack_trace(loaded: Loaded) -> None:
    async def scenario(client):
        app = client.sanic_app

        @app.get("/boom")
        async def boom(request):
            raise RuntimeError("secret internals")

        _, response = await client.get("/boom")
        return response

    response = run(loaded, scenario)
    assert response.status == 500
    assert response.json == {
        "error": {"status": 500, "message": "internal server error"}
    }
    assert "Traceback" not in response.text
    assert "secret" not in response.text


# --- batch --------------------------------------------------------------------


def test_batch_answers_in_request_order(loaded: Loaded) -> None:
    with psycopg.connect(loaded.db.conninfo()) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "select user_id from features.subscriptions_profile_snapshots "
                "where as_of = '2024-02-29' order by user_id limit 100"
            )
        ]
    asked = [*ids[:98], "NO-SUCH-USER", USER]
    response = post(loaded, "/features", {"user_ids": asked})
    assert response.status == 200
    body = response.json
    assert [result["user_id"] for result in body["results"]] == asked
    assert body["not_found"] == ["NO-SUCH-USER"]
    assert body["results"][98] | {"as_of": None} == {
        "user_id": "NO-SUCH-USER",
        "found": False,
        "features": None,
        "as_of": None,
        "expired": {},
        "not_yet_valid": {},
    }
    last = body["results"][99]
    assert last["found"] is True
    assert last["features"]["monthly_fee"] == 29.85
    assert body["max_batch"] == 150


def test_batch_with_feature_selection(loaded: Loaded) -> None:
    response = post(
        loaded,
        "/features",
        {"user_ids": [USER, USER], "features": ["subs_profile_fv:monthly_fee"]},
    )
    assert response.status == 200
    results = response.json["results"]
    assert [result["features"] for result in results] == [{"monthly_fee": 29.85}] * 2


def test_batch_over_the_limit_is_413(loaded: Loaded) -> None:
    response = post(loaded, "/features", {"user_ids": [USER] * 151})
    assert response.status == 413
    assert response.json["error"]["max_batch"] == 150


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"ids": [USER]}, "user_ids"),
        ({"user_ids": []}, "non-empty"),
        ({"user_ids": USER}, "non-empty list"),
        ({"user_ids": [USER, ""]}, "user_ids[1] is empty"),
        ({"user_ids": [USER, 7]}, "user_ids[1] is a number"),
        ({"user_ids": [None]}, "user_ids[0] is null"),
        ({"user_ids": [[USER]]}, "user_ids[0] is a list"),
        ({"user_ids": [USER], "features": []}, "features is empty"),
        ({"user_ids": [USER], "features": " "}, "features is empty"),
        ({"user_ids": [USER], "feature_service": ""}, "feature_service is empty"),
        ({"user_ids": [USER], "feature_service": "nope"}, DEFAULT_SERVICE),
    ],
)
def test_bad_batch_is_400(loaded: Loaded, body: Any, fragment: str) -> None:
    response = post(loaded, "/features", body)
    assert response.status == 400
    assert fragment in response.json["error"]["message"]


def test_batch_id_with_a_lone_surrogate_is_400(loaded: Loaded) -> None:
    # Valid JSON whose string has no UTF-8 form; it used to reach the entity
    # key encoder and answer 500.
    async def scenario(client):
        _, response = await client.post(
            "/features", content=b'{"user_ids": ["7590-VHVEG", "x\\ud800"]}'
        )
        return response

    response = run(loaded, scenario)
    assert response.status == 400
    assert response.json["error"]["message"] == (
        "user_ids[1] contains unpaired surrogates (not Unicode text)"
    )


def test_batch_body_that_is_not_json_is_400(loaded: Loaded) -> None:
    async def scenario(client):
        _, response = await client.post("/features", content=b"{not json")
        return response

    response = run(loaded, scenario)
    assert response.status == 400
    assert "error" in response.json


# --- operations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "fragment"),
    [
        ("garbage", "STREAMFLOW_NOW must be an ISO-8601 date"),
        ("9999-12-31T23:59:59-05:00", "STREAMFLOW_NOW is out of range"),
    ],
)
def test_bad_platform_clock_stops_the_service_at_startup(
    now: str, fragment: str
) -> None:
    # Read per request, a bad STREAMFLOW_NOW used to pass /health and /ready
    # and then answer every feature request with a 500.
    with pytest.raises(SettingsError, match=fragment):
        ServingSettings.from_env({"STREAMFLOW_NOW": now})


def test_health_and_ready(loaded: Loaded) -> None:
    assert get(loaded, "/health").json == {"status": "ok"}
    ready = get(loaded, "/ready")
    assert ready.status == 200
    assert ready.json["checks"] == {"registry": "ok", "online_store": "ok"}


def test_ready_is_503_when_online_tables_are_missing(loaded: Loaded) -> None:
    # A database with the registry's definitions but no online tables: the
    # service's own pool points at an empty database.
    empty = replace(loaded.settings, pg=loaded.settings.pg.with_database("postgres"))

    async def scenario(client):
        _, response = await client.get("/ready")
        return response

    response = run(loaded, scenario, settings=empty)
    assert response.status == 503
    assert response.headers["retry-after"] == str(loaded.settings.retry_after_s)
    assert "missing tables" in response.json["checks"]["online_store"]


def test_metrics_count_requests_by_route_and_status(loaded: Loaded) -> None:
    async def scenario(client):
        await client.get(f"/features/{USER}")
        await client.get("/features/NO-SUCH-USER")
        _, response = await client.get("/metrics")
        return response

    text = run(loaded, scenario).text
    for line in (
        'streamflow_http_requests_total{method="GET",'
        'route="/features/<user_id:str>",status="200"}',
        'streamflow_http_requests_total{method="GET",'
        'route="/features/<user_id:str>",status="404"}',
        "streamflow_http_request_duration_seconds_bucket",
        "streamflow_online_store_read_seconds_count",
        'streamflow_users_served_total{outcome="not_found"}',
    ):
        assert line in text


def test_metrics_do_not_label_arbitrary_methods(loaded: Loaded) -> None:
    # Any token parses as a method; each used to become a new label value.
    async def scenario(client):
        _, response = await client.request("BREW-COFFEE-7", "/health")
        assert response.status == 405
        _, response = await client.get("/metrics")
        return response

    text = run(loaded, scenario).text
    assert "BREW-COFFEE-7" not in text
    assert 'method="other",route="unmatched",status="405"' in text


def test_openapi_documents_every_route(loaded: Loaded) -> None:
    async def scenario(client):
        _, response = await client.get("/openapi.json")
        return response, client.sanic_app

    response, app = run(loaded, scenario)
    assert response.status == 200
    document = response.json
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    registered = set()
    for route in app.router.routes:
        path = "/" + route.path
        for name in ("user_id",):
            path = path.replace(f"<{name}:str>", "{" + name + "}")
        for method in route.methods - {"HEAD", "OPTIONS"}:
            registered.add((path, method))
    assert registered <= documented, registered - documented
