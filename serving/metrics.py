"""Prometheus metrics, shared by all workers.

Several Sanic workers are separate processes, and a scrape lands on any one of
them; per-worker registries would report whichever worker answered. So the
service uses prometheus_client's multiprocess mode: `python -m serving` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker starts, each
worker writes its samples there, and /metrics aggregates the folder. Without
that variable (tests, a single process) the default registry is used.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sanic import Request, Sanic
from sanic.response import HTTPResponse, raw

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The service answers in about a millisecond; the default buckets start at
# 5 ms and would put almost every request into the first one.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip

REQUESTS = Counter(
    "streamflow_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "streamflow_http_request_duration_seconds",
    "Time from request received to response ready, by route template.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
STORE_READ = Histogram(
    "streamflow_online_store_read_seconds",
    "Time of one online-store read (pool checkout + query + fetch).",
    buckets=_LATENCY_BUCKETS,
)
USERS_SERVED = Counter(
    "streamflow_users_served_total",
    "Users answered, by outcome (found, not_found).",
    ["outcome"],
)


# Any token is a valid HTTP method to the parser; others are counted as one
# label value so that a client cannot mint time series at will.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method_label(request: Request) -> str:
    method = request.method
    return method if method in _KNOWN_METHODS else "other"


def _route_label(request: Request) -> str:
    # The route template, not the path, so that every user id does not become
    # its own time series.
    route = request.route
    return f"/{route.path}" if route is not None else "unmatched"


def _scrape() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def setup_metrics(app: Sanic) -> None:
    @app.on_request(priority=100)
    async def start_timer(request: Request) -> None:
        request.ctx.started = time.perf_counter()

    @app.on_response(priority=100)
    async def record(request: Request, response: HTTPResponse) -> None:
        started = getattr(request.ctx, "started", None)
        route, method = _route_label(request), _method_label(request)
        REQUESTS.labels(route, method, str(response.status)).inc()
        if started is not None:
            LATENCY.labels(route, method).observe(time.perf_counter() - started)

    @app.get("/metrics", name="metrics")
    async def metrics(request: Request) -> HTTPResponse:
        return raw(_scrape(), content_type=CONTENT_TYPE_LATEST)
