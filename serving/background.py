"""Run the feature service detached, for `make demo` and `make stop`.

`python -m serving.background start` launches `python -m serving` in its own
session with its output in logs/serving.log and its pid in logs/serving.pid
(logs/ is git-ignored), then waits until /health answers, so the demo's next
step can curl it. `stop` sends SIGTERM to Sanic's main process, which stops its
workers itself, waits, and removes the pid file.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from serving.config import REPO_ROOT, ServingSettings

logger = logging.getLogger(__name__)

RUN_DIR = REPO_ROOT / "logs"
PID_FILE = RUN_DIR / "serving.pid"
LOG_FILE = RUN_DIR / "serving.log"
# Importing Feast in every worker takes several seconds on a small machine.
START_TIMEOUT_S = 120.0
# Sanic waits up to GRACEFUL_SHUTDOWN_TIMEOUT (15 s) for open connections.
STOP_TIMEOUT_S = 30.0


class BackgroundError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; it counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return state != "Z"


def _read_pid() -> int | None:
    try:
        return int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read {path}: {error})"


def start(settings: ServingSettings) -> int:
    health = f"http://{settings.host}:{settings.port}/health"
    pid = _read_pid()
    if pid is not None and _alive(pid):
        raise BackgroundError(
            f"the service is already running (pid {pid}, {PID_FILE}); "
            "run `make stop` first"
        )
    if _health_ok(health):
        raise BackgroundError(
            f"something else already answers on {health}; stop it or set PORT"
        )
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with LOG_FILE.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: the service outlives `make demo`, and `stop`
            # can signal the main process and its workers as one group.
            start_new_session=True,
        )
    PID_FILE.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            PID_FILE.unlink(missing_ok=True)
            raise BackgroundError(
                f"the service exited with code {process.returncode} during "
                f"startup; last lines of {LOG_FILE}:\n{_tail(LOG_FILE)}"
            )
        if _health_ok(health):
            logger.info(
                "service up on http://%s:%d (pid %d, log %s)",
                settings.host,
                settings.port,
                process.pid,
                LOG_FILE,
            )
            return process.pid
        time.sleep(0.5)
    stop()
    raise BackgroundError(
        f"the service did not answer {health} within {START_TIMEOUT_S:.0f} s; "
        f"last lines of {LOG_FILE}:\n{_tail(LOG_FILE)}"
    )


def stop() -> bool:
    """Stop the service started by `start`; False when none was running."""
    pid = _read_pid()
    if pid is None or not _alive(pid):
        PID_FILE.unlink(missing_ok=True)
        logger.info("the service is not running")
        return False
    logger.info("stopping the service (pid %d)", pid)
    # Only the main process: it shuts its workers down in order. Signalling
    # the whole group would also kill Sanic's state-manager process under it
    # and turn a clean shutdown into a traceback.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        logger.warning(
            "no exit after %.0f s; killing its process group", STOP_TIMEOUT_S
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    logger.info("service stopped")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.action == "start":
            start(ServingSettings.from_env())
        else:
            stop()
    except BackgroundError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
