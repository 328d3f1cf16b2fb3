"""Helpers for the service tests: a materialized store and a running server.

The store is built the way `make demo` builds it -- ingest, dbt build, apply,
materialize -- by running the project's own commands against a database of
its own (streamflow_test_serving), once per test session however many
serving test modules ask for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The course data ends on 2024-02-29; one day later every snapshot of the
# last month is fresh, and month_000's rows are past the 45-day TTL.
PLATFORM_NOW = "2024-03-01T00:00:00+00:00"
STARTUP_TIMEOUT_S = 120.0

_built: dict[str, PgSettings] = {}


def chain_env(settings: PgSettings, **extra: str) -> dict[str, str]:
    env = {**os.environ, **settings.as_env(), "STREAMFLOW_NOW": PLATFORM_NOW}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> None:
    started = time.monotonic()
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    logger.info("%s took %.1f s", " ".join(args[-2:]), time.monotonic() - started)


def build_serving_store(make_database: Callable[[str], PgSettings]) -> PgSettings:
    """A database holding the materialized store (built once per session)."""
    if "serving" in _built:
        return _built["serving"]
    settings = make_database("serving")
    env = chain_env(settings)
    python = sys.executable
    dbt = str(Path(python).with_name("dbt"))
    _run([python, "-m", "scripts.ingest"], env)
    _run([dbt, "build", "--quiet"], env, cwd=REPO_ROOT / "dbt_project")
    _run([python, "-m", "scripts.apply_definitions"], env)
    _run([python, "-m", "scripts.materialize", "--end", PLATFORM_NOW], env)
    _built["serving"] = settings
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(
    settings: PgSettings, log_path: Path, **extra_env: str
) -> Iterator[str]:
    """`python -m serving` as a real process; yields its base URL."""
    port = free_port()
    env = chain_env(
        settings,
        **{"HOST": "127.0.0.1", "WORKERS": "1", **extra_env, "PORT": str(port)},
    )
    # Each server gets its own metrics folder (python -m serving makes one).
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the service exited with {process.returncode}:\n"
                f"{log_path.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(
        f"no /health answer within {STARTUP_TIMEOUT_S:.0f} s:\n"
        f"{log_path.read_text(errors='replace')[-3000:]}"
    )
