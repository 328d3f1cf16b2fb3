"""`python -m serving`: run the feature service on HOST:PORT with WORKERS.

Sanic runs a main process that supervises WORKERS worker processes; each
worker calls `create_app()` through an AppLoader and opens its own Feast store
and connection pool (see serving/app.py).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

logger = logging.getLogger("serving.main")


def _prepare_metrics_dir() -> None:
    # Must run before prometheus_client is imported anywhere in this process
    # tree: the library picks its multiprocess value store at import time, and
    # the workers inherit this environment.
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        # Samples of a previous run would be added to this run's counters.
        for stale in folder.glob("*.db"):
            stale.unlink()
        return
    folder = Path(tempfile.mkdtemp(prefix="streamflow-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _prepare_metrics_dir()

    from sanic import Sanic
    from sanic.worker.loader import AppLoader
    from sanic.worker.manager import WorkerManager
    from sanic.worker.process import WorkerProcess

    from serving.app import create_app
    from serving.config import ServingSettings, SettingsError

    try:
        settings = ServingSettings.from_env()
    except SettingsError as error:
        logger.error("%s", error)
        return 2
    # Sanic gives a worker 30 s to report ready, counted in tenths of a second
    # on these class attributes (no setting exists). Importing Feast alone
    # takes 10-20 s per worker on a busy 2-core machine, so allow more.
    ticks = int(settings.worker_start_timeout_s * 10)
    WorkerProcess.THRESHOLD = WorkerManager.THRESHOLD = ticks
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        motd=False,
    )
    logger.info(
        "serving on http://%s:%d with %d worker(s), metrics in %s",
        settings.host,
        settings.port,
        settings.workers,
        os.environ["PROMETHEUS_MULTIPROC_DIR"],
    )
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
