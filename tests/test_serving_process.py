"""The real server process (`python -m serving`) over HTTP, including load."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from scripts.settings import PgSettings
from tests.serving_fixtures import build_serving_store, running_server

pytestmark = pytest.mark.slow

LOAD_REQUESTS = 2_000
LOAD_CONNECTIONS = 50


@pytest.fixture(scope="module")
def serving_db(pg_settings: PgSettings, make_database) -> PgSettings:
    return build_serving_store(make_database)


@pytest.fixture(scope="module")
def base_url(serving_db: PgSettings, tmp_path_factory) -> Iterator[str]:
    log = Path(tmp_path_factory.mktemp("serving")) / "serving.log"
    with running_server(serving_db, log, WORKERS="2") as url:
        yield url


def test_real_server_answers_over_http(base_url: str) -> None:
    response = httpx.get(f"{base_url}/features/7590-VHVEG", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert '"monthly_fee":29.85' in response.text
    assert httpx.get(f"{base_url}/ready", timeout=10).status_code == 200
    missing = httpx.get(f"{base_url}/features/NO-SUCH-USER", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["user_id"] == "NO-SUCH-USER"


def test_metrics_aggregate_all_workers(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(20):
            client.get("/health", headers={"connection": "close"})
        text = client.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("streamflow_http_requests_total")
        and 'route="/health"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 20


def test_load_2000_requests_at_50_connections(
    base_url: str, serving_db: PgSettings
) -> None:
    with psycopg.connect(serving_db.conninfo()) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "select distinct user_id from features.subscriptions_profile_snapshots"
            )
        ]
    rng = random.Random(7)
    paths = [f"/features/{rng.choice(ids)}" for _ in range(LOAD_REQUESTS)]

    async def drive() -> Counter:
        statuses: Counter = Counter()
        queue: asyncio.Queue[str] = asyncio.Queue()
        for path in paths:
            queue.put_nowait(path)
        limits = httpx.Limits(max_connections=LOAD_CONNECTIONS)
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=30
        ) as client:

            async def worker() -> None:
                while not queue.empty():
                    path = queue.get_nowait()
                    try:
                        response = await client.get(path)
                        statuses[response.status_code] += 1
                    except httpx.HTTPError as error:
                        statuses[type(error).__name__] += 1

            await asyncio.gather(*(worker() for _ in range(LOAD_CONNECTIONS)))
        return statuses

    statuses = asyncio.run(drive())
    assert statuses == Counter({200: LOAD_REQUESTS})
