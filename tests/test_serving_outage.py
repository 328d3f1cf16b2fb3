"""The database goes away under a running service and comes back.

Stopping a server is only safe on one nobody else uses, so this test starts a
throwaway PostgreSQL cluster of its own (scripts.local_db on a temporary data
folder and a free port), copies the materialized store into it with pg_dump,
and points a real service process at it. The machine's server and the
project-local cluster are never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts import local_db
from scripts.settings import PgSettings
from tests.serving_fixtures import build_serving_store, free_port, running_server

pytestmark = pytest.mark.slow

RECOVERY_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def throwaway_cluster(
    pg_settings: PgSettings, make_database
) -> Iterator[tuple[PgSettings, Path]]:
    source = build_serving_store(make_database)
    folder = Path(tempfile.mkdtemp(prefix="streamflow-outage-"))
    # The server runs as the postgres OS user, who must be able to enter it.
    folder.chmod(0o755)
    data_dir = folder / "pgdata"
    settings = PgSettings(
        host="127.0.0.1",
        port=free_port(),
        user="streamflow",
        password="",
        dbname="streamflow_outage",
        local_cluster=True,
    )
    try:
        local_db.ensure_running(settings, data_dir=data_dir)
        _copy_database(source, settings)
        yield settings, data_dir
    finally:
        with contextlib.suppress(local_db.LocalDbError):
            local_db.stop(settings, data_dir=data_dir)
        shutil.rmtree(folder, ignore_errors=True)


def _copy_database(source: PgSettings, target: PgSettings) -> None:
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", "--dbname", source.conninfo()],
        capture_output=True,
        check=True,
    )
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", target.conninfo()],
        input=dump.stdout,
        capture_output=True,
        check=True,
    )


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def test_503_while_the_database_is_down_then_200_without_restart(
    throwaway_cluster: tuple[PgSettings, Path], tmp_path: Path
) -> None:
    settings, data_dir = throwaway_cluster
    with running_server(
        settings,
        tmp_path / "serving.log",
        SERVING_POOL_TIMEOUT="1",
        SERVING_RETRY_AFTER="1",
    ) as base_url:
        features = f"{base_url}/features/7590-VHVEG"
        assert _get(features).status_code == 200

        local_db.stop(settings, data_dir=data_dir)
        down = [_get(features) for _ in range(3)]
        assert [response.status_code for response in down] == [503, 503, 503]
        for response in down:
            assert response.headers["retry-after"] == "1"
            assert "Traceback" not in response.text
            assert response.json()["error"]["status"] == 503
        ready = _get(f"{base_url}/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "1"
        assert _get(f"{base_url}/health").status_code == 200

        local_db.ensure_running(settings, data_dir=data_dir)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        response = _get(features)
        while response.status_code != 200 and time.monotonic() < deadline:
            assert response.status_code == 503
            time.sleep(0.5)
            response = _get(features)
        assert response.status_code == 200
        assert response.json()["features"]["monthly_fee"] == 29.85
        assert _get(f"{base_url}/ready").status_code == 200
