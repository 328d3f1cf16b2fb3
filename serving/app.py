"""The Sanic application: factory, per-worker resources, routes.

Each worker process builds its own FeatureStore and connection pool in a
startup listener (a pool cannot cross a fork, and Feast's registry client
holds its own connections), resolves the catalog once, and closes both on
shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

from feast import FeatureStore
from psycopg_pool import AsyncConnectionPool
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from scripts.settings import export_env
from serving import metrics
from serving.catalog import FeatureCatalog, Selection, SelectionError
from serving.config import ServingSettings
from serving.errors import (
    BatchTooLarge,
    InvalidRequest,
    JsonErrorHandler,
    ServiceUnavailable,
    UserNotFound,
)
from serving.online import OnlineReader, StoreUnavailable
from serving.openapi import openapi_document

logger = logging.getLogger(__name__)

APP_NAME = "streamflow_features"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_USER_ID_LENGTH = 64
# C0 and C1 control characters and DEL: never part of an id, and a way to
# smuggle line breaks into logs.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# JSON's \ud800 escapes decode to lone surrogates, which have no UTF-8 form:
# the entity key could not be built from them.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# JSON type names for "must be a string" messages.
_JSON_TYPES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def create_app(
    settings: ServingSettings | None = None, resources: Resources | None = None
) -> Sanic:
    """Build the application. Each worker opens its own resources when it
    starts; tests may pass ready ones instead (they then own their closing)."""
    settings = settings or ServingSettings.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # Sanic's own log handlers would print every line twice next to the root
    # handler; its loggers propagate to the root with LOG_FORMAT instead.
    app = Sanic(
        _unused_app_name(), error_handler=JsonErrorHandler(), configure_logging=False
    )
    app.config.update(
        {
            # Per-request access lines cost more than the request itself at
            # these rates; /metrics counts requests by route and status.
            "ACCESS_LOG": False,
            "FALLBACK_ERROR_FORMAT": "json",
            # The largest legitimate body is a full batch of 64-character ids.
            "REQUEST_MAX_SIZE": max(65_536, settings.batch_max * 80),
        }
    )
    app.ctx.settings = settings
    setup_resources(app, resources)
    metrics.setup_metrics(app)
    setup_routes(app)
    return app


def _unused_app_name() -> str:
    # Sanic refuses two apps of one name in a process; tests build several.
    name, number = APP_NAME, 1
    while True:
        try:
            Sanic.get_app(name)
        except SanicException:
            return name
        number += 1
        name = f"{APP_NAME}_{number}"


# --- resources ----------------------------------------------------------------


@dataclass
class Resources:
    """What one worker holds: Feast's store (registry client), the resolved
    catalog and the online-store pool."""

    store: FeatureStore
    catalog: FeatureCatalog
    pool: AsyncConnectionPool


def load_catalog(settings: ServingSettings) -> tuple[FeatureStore, FeatureCatalog]:
    """Open the Feast store and resolve the catalog (blocking: run in a thread)."""
    # feature_store.yaml expands ${PG...}; fill them from the one place that
    # knows the defaults before Feast reads the file.
    export_env(settings.pg)
    store = FeatureStore(repo_path=str(settings.feature_repo))
    catalog = FeatureCatalog.from_store(store)
    if settings.default_feature_service not in catalog.services:
        raise RuntimeError(
            f"feature service {settings.default_feature_service!r} is not in "
            f"the registry of {settings.pg.describe()} (run make apply); "
            f"registered: {', '.join(catalog.services) or 'none'}"
        )
    return store, catalog


async def open_pool(
    settings: ServingSettings, store: FeatureStore
) -> AsyncConnectionPool:
    online = store.config.online_store
    # Same search_path as Feast's own online-store connections, so the
    # unqualified table names resolve exactly where Feast wrote them.
    schema = (online.db_schema or online.user or "public").strip()
    search_path = schema if schema == "public" else f"{schema},public"
    # force_generic_plan: the statement is prepared once per connection, but
    # with an array parameter PostgreSQL keeps re-planning it (a custom plan,
    # ~0.25 ms each time) unless told to reuse the generic one.
    options = f"-c search_path={search_path} -c plan_cache_mode=force_generic_plan"
    pool = AsyncConnectionPool(
        settings.pg.conninfo(
            options=options,
            connect_timeout=max(1, int(settings.pool_timeout_s)),
            application_name="streamflow-serving",
        ),
        min_size=settings.pool_size,
        max_size=settings.pool_size,
        timeout=settings.pool_timeout_s,
        # Autocommit: a read needs no transaction, and BEGIN/ROLLBACK would
        # add two round trips to every request.
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def _attach(app: Sanic, resources: Resources) -> None:
    app.ctx.resources = resources
    app.ctx.store = resources.store
    app.ctx.catalog = resources.catalog
    app.ctx.pool = resources.pool
    app.ctx.reader = OnlineReader(
        resources.catalog, resources.pool, read_timer=metrics.STORE_READ
    )


def setup_resources(app: Sanic, injected: Resources | None) -> None:
    if injected is not None:
        # The caller (a test) owns these and closes them; Sanic's test client
        # fires the server listeners around every single request.
        _attach(app, injected)
        return

    @app.before_server_start
    async def open_resources(app: Sanic) -> None:
        settings: ServingSettings = app.ctx.settings
        started = time.perf_counter()
        store, catalog = await asyncio.to_thread(load_catalog, settings)
        pool = await open_pool(settings, store)
        _attach(app, Resources(store, catalog, pool))
        logger.info(
            "worker ready in %.1f s: %d feature services, pool of %d on %s",
            time.perf_counter() - started,
            len(catalog.services),
            settings.pool_size,
            settings.pg.describe(),
        )

    @app.after_server_stop
    async def close_resources(app: Sanic) -> None:
        resources: Resources | None = getattr(app.ctx, "resources", None)
        if resources is None:
            return
        await resources.pool.close()
        close_store(resources.store)
        logger.info("worker resources closed")


def close_store(store: FeatureStore) -> None:
    """Release the registry's SQLAlchemy connections (FeatureStore has no close)."""
    registry = getattr(store, "registry", None)
    for engine_name in ("write_engine", "read_engine"):
        engine = getattr(registry, engine_name, None)
        if engine is not None:
            engine.dispose()


# --- request helpers ----------------------------------------------------------


def validate_user_id(user_id: object, where: str = "user id") -> str:
    if not isinstance(user_id, str):
        kind = _JSON_TYPES.get(type(user_id), type(user_id).__name__)
        raise InvalidRequest(f"{where} is {kind}; send a non-empty string")
    if not user_id:
        raise InvalidRequest(f"{where} is empty; send a non-empty string")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidRequest(
            f"{where} is {len(user_id)} characters long; "
            f"the maximum is {MAX_USER_ID_LENGTH}"
        )
    if _CONTROL_CHARS.search(user_id):
        raise InvalidRequest(f"{where} contains control characters")
    if _SURROGATES.search(user_id):
        raise InvalidRequest(f"{where} contains unpaired surrogates (not Unicode text)")
    return user_id


def resolve_selection(
    catalog: FeatureCatalog,
    default_service: str,
    feature_service: object,
    features: object,
) -> Selection:
    """None means "not asked for"; an empty value is an error, not a request
    for the default service (that would answer a different question)."""
    if isinstance(features, list) and all(isinstance(f, str) for f in features):
        features = ",".join(features)
    if features is not None and not isinstance(features, str):
        raise InvalidRequest("features must be 'view:feature,...' or a list of them")
    if feature_service is not None and not isinstance(feature_service, str):
        raise InvalidRequest("feature_service must be a string")
    if feature_service is not None and features is not None:
        raise InvalidRequest("ask for feature_service or features, not both")
    try:
        if features is not None:
            if not features.strip():
                raise SelectionError(
                    "features is empty; valid features (view:feature): "
                    + ", ".join(catalog.feature_refs())
                )
            return catalog.adhoc(features)
        if feature_service == "":
            raise SelectionError(
                "feature_service is empty; valid feature services: "
                + ", ".join(sorted(catalog.services))
            )
        return catalog.service(feature_service or default_service)
    except SelectionError as error:
        raise InvalidRequest(str(error)) from None


async def read_users(app: Sanic, selection: Selection, user_ids: list[str]):
    try:
        return await app.ctx.reader.fetch(selection, user_ids)
    except StoreUnavailable as error:
        raise ServiceUnavailable(
            str(error), retry_after_s=app.ctx.settings.retry_after_s
        ) from None


# --- routes -------------------------------------------------------------------


def setup_routes(app: Sanic) -> None:
    @app.get("/health", name="health")
    async def health(request: Request) -> HTTPResponse:
        return json({"status": "ok"})

    @app.get("/ready", name="ready")
    async def ready(request: Request) -> HTTPResponse:
        settings: ServingSettings = app.ctx.settings
        catalog: FeatureCatalog = app.ctx.catalog
        checks = {"registry": "ok", "online_store": "ok"}
        timeout = settings.pool_timeout_s + 1
        try:
            await asyncio.wait_for(
                asyncio.to_thread(
                    app.ctx.store.registry.list_feature_services,
                    catalog.project,
                    allow_cache=False,
                ),
                timeout,
            )
        except Exception as error:  # any failure means "not ready", with why
            checks["registry"] = f"unreachable: {type(error).__name__}"
        tables = sorted({view.table for view in catalog.views.values()})
        try:
            async with app.ctx.pool.connection(timeout=timeout) as conn:
                cursor = await conn.execute(
                    "select name from unnest(%s::text[]) as t (name)"
                    " where to_regclass(name) is null",
                    [tables],
                )
                missing = [row[0] for row in await cursor.fetchall()]
            if missing:
                checks["online_store"] = "missing tables: " + ", ".join(missing)
        except Exception as error:
            checks["online_store"] = f"unreachable: {type(error).__name__}"
        ok = all(value == "ok" for value in checks.values())
        headers = {} if ok else {"Retry-After": str(settings.retry_after_s)}
        return json(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status=200 if ok else 503,
            headers=headers,
        )

    @app.get("/feature-services", name="feature_services")
    async def feature_services(request: Request) -> HTTPResponse:
        body = app.ctx.catalog.describe()
        body["default_feature_service"] = app.ctx.settings.default_feature_service
        return json(body)

    @app.get("/features", name="features_missing_id")
    async def features_without_id(request: Request) -> HTTPResponse:
        # GET /features and /features/ would otherwise be a bare 404 route miss.
        raise InvalidRequest("user id is empty; use GET /features/<user_id>")

    # unquote: an id arrives percent-encoded; validate what the client meant.
    @app.get("/features/<user_id:str>", name="features_one", unquote=True)
    async def features_one(request: Request, user_id: str) -> HTTPResponse:
        validate_user_id(user_id)
        catalog: FeatureCatalog = app.ctx.catalog
        settings: ServingSettings = app.ctx.settings
        if request.query_string:
            # Blank values kept: `?features=` is an empty selection (400), not
            # the same request as no parameter at all.
            args = request.get_args(keep_blank_values=True)
            selection = resolve_selection(
                catalog,
                settings.default_feature_service,
                args.get("feature_service"),
                args.get("features"),
            )
        else:
            selection = catalog.services[settings.default_feature_service]
        (answer,) = await read_users(app, selection, [user_id])
        if not answer.found:
            metrics.USERS_SERVED.labels("not_found").inc()
            raise UserNotFound(
                f"user {user_id!r} not found in the online store",
                details={"user_id": user_id, "views": list(selection.view_names)},
            )
        metrics.USERS_SERVED.labels("found").inc()
        return json(answer.to_json(selection))

    @app.post("/features", name="features_batch")
    async def features_batch(request: Request) -> HTTPResponse:
        settings: ServingSettings = app.ctx.settings
        body = request.json
        if not isinstance(body, dict) or "user_ids" not in body:
            raise InvalidRequest('send a JSON object {"user_ids": ["...", ...]}')
        user_ids = body["user_ids"]
        if not isinstance(user_ids, list) or not user_ids:
            raise InvalidRequest("user_ids must be a non-empty list of strings")
        if len(user_ids) > settings.batch_max:
            raise BatchTooLarge(
                f"{len(user_ids)} user ids in one batch; the maximum is "
                f"{settings.batch_max}",
                details={"max_batch": settings.batch_max},
            )
        for index, user_id in enumerate(user_ids):
            validate_user_id(user_id, where=f"user_ids[{index}]")
        selection = resolve_selection(
            app.ctx.catalog,
            settings.default_feature_service,
            body.get("feature_service"),
            body.get("features"),
        )
        answers = await read_users(app, selection, user_ids)
        results, not_found = [], []
        for answer in answers:
            entry = answer.to_json(selection)
            del entry["feature_service"]
            entry["found"] = answer.found
            if not answer.found:
                not_found.append(answer.user_id)
                entry["features"] = None
            results.append(entry)
        metrics.USERS_SERVED.labels("found").inc(len(answers) - len(not_found))
        metrics.USERS_SERVED.labels("not_found").inc(len(not_found))
        return json(
            {
                "feature_service": selection.feature_service,
                "max_batch": settings.batch_max,
                "results": results,
                "not_found": not_found,
            }
        )

    @app.get("/openapi.json", name="openapi")
    async def openapi(request: Request) -> HTTPResponse:
        return json(openapi_document(app.ctx.settings))
