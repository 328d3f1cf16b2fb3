"""The project-local PostgreSQL cluster (`make db-up` / `make db-down`).

When PGHOST is unset (see scripts/settings.py) the platform runs its own
cluster in `<repo>/.pgdata`, listening on 127.0.0.1 only, with trust
authentication there and no unix socket, using whatever PostgreSQL server
binaries the machine already has. `ensure_running()` is idempotent: it
initialises the folder on first use, starts the server when it is down,
clears a postmaster.pid left behind by a crash, and creates the platform's
role and database.

PostgreSQL refuses to run as root. When we are root, initdb and the server
run as the `postgres` OS user; if that user cannot reach the repository
folder (a checkout under /root, say), the data lives in
/tmp/streamflow-pg-<hash> and `.pgdata` is a symlink to it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from scripts.settings import PgSettings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".pgdata"
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# Checked after PATH and `pg_config --bindir`; newest version first within
# each pattern (Debian/Ubuntu packages, then Homebrew on ARM and Intel).
SYSTEM_BINDIR_PATTERNS = (
    "/usr/lib/postgresql/*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
SUPERUSER = "postgres"
POSTGRES_OS_USER = "postgres"
LOG_NAME = "server.log"
START_ATTEMPTS = 3

INSTALL_HINT = (
    "Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
    "`brew install postgresql@16`) or point PGHOST/PGPORT/PGUSER/PGPASSWORD "
    "at an existing server instead of the project-local cluster."
)


class LocalDbError(RuntimeError):
    """The database could not be reached or the local cluster not started."""


@dataclass(frozen=True)
class ClusterStatus:
    data_dir: Path
    initialised: bool
    # Postmaster pid and port from postmaster.pid, when a live server owns it.
    pid: int | None
    port: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


# --- finding the server binaries -------------------------------------------


def candidate_bindirs(
    path_env: str | None = None,
    patterns: Sequence[str] = SYSTEM_BINDIR_PATTERNS,
) -> list[Path]:
    """Folders that may hold initdb/pg_ctl/postgres, in the order we prefer."""
    path_env = os.environ.get("PATH", "") if path_env is None else path_env
    candidates: list[Path] = []
    pg_ctl = shutil.which("pg_ctl", path=path_env) if path_env else None
    if pg_ctl:
        # /usr/local/bin/pg_ctl is often a symlink; the real folder is the one
        # that also holds postgres and initdb of the same version.
        candidates.append(Path(pg_ctl).resolve().parent)
    pg_config = shutil.which("pg_config", path=path_env) if path_env else None
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    for pattern in patterns:
        candidates.extend(sorted(map(Path, glob.glob(pattern)), key=_version_key))
    return candidates


def _version_key(bindir: Path) -> tuple[int, ...]:
    # Sort descending by the numeric version in the path ("15", "postgresql@16").
    numbers = re.findall(r"\d+", str(bindir))
    return tuple(-int(number) for number in numbers)


def find_bindir(
    path_env: str | None = None,
    patterns: Sequence[str] = SYSTEM_BINDIR_PATTERNS,
) -> Path:
    """The first candidate folder holding all of initdb, pg_ctl and postgres."""
    searched = candidate_bindirs(path_env, patterns)
    for bindir in searched:
        if all(os.access(bindir / name, os.X_OK) for name in SERVER_PROGRAMS):
            logger.debug("PostgreSQL server binaries in %s", bindir)
            return bindir
    where = ", ".join(str(path) for path in searched) or "nothing matched"
    raise LocalDbError(
        "No PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH, "
        f"via pg_config or in {', '.join(patterns) or 'no system folders'} "
        f"(checked: {where}). {INSTALL_HINT}"
    )


# --- running commands as the right OS user ---------------------------------


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_command(args: Sequence[str]) -> list[str]:
    if not _as_root():
        return list(args)
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise LocalDbError(
            "PostgreSQL refuses to run as root and there is no "
            f"'{POSTGRES_OS_USER}' OS user to run it as; create one "
            f"(useradd --system {POSTGRES_OS_USER}) or run as a normal user."
        ) from None
    return ["runuser", "-u", POSTGRES_OS_USER, "--", *args]


def _run_server_tool(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    # cwd "/" because the postgres OS user may not be allowed into ours.
    return subprocess.run(
        _server_command(args), capture_output=True, text=True, cwd="/", check=False
    )


def _postgres_can_enter(folder: Path) -> bool:
    if not _as_root():
        return True
    result = _run_server_tool(["test", "-x", str(folder)])
    return result.returncode == 0


# --- the data folder --------------------------------------------------------


def resolve_data_dir(data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    """The real folder holding the cluster, creating the /tmp fallback and its
    symlink when the server's OS user cannot reach `data_dir`."""
    if data_dir.is_symlink():
        return Path(os.readlink(data_dir))
    if data_dir.exists() or _postgres_can_enter(data_dir.parent):
        return data_dir
    digest = hashlib.sha1(
        str(data_dir.absolute()).encode(), usedforsecurity=False
    ).hexdigest()[:12]
    real = Path(f"/tmp/streamflow-pg-{digest}")
    logger.info(
        "%s cannot enter %s; keeping the cluster in %s (symlinked)",
        POSTGRES_OS_USER,
        data_dir.parent,
        real,
    )
    data_dir.symlink_to(real, target_is_directory=True)
    return real


def _prepare_empty_dir(real_dir: Path) -> None:
    real_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _as_root():
        account = pwd.getpwnam(POSTGRES_OS_USER)
        os.chown(real_dir, account.pw_uid, account.pw_gid)


def _initialised(real_dir: Path) -> bool:
    return (real_dir / "PG_VERSION").is_file()


def _initdb(bindir: Path, real_dir: Path) -> None:
    logger.info("initialising a new PostgreSQL cluster in %s", real_dir)
    _prepare_empty_dir(real_dir)
    result = _run_server_tool(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(real_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-instructions",
        ]
    )
    if result.returncode != 0:
        raise LocalDbError(f"initdb failed in {real_dir}:\n{result.stderr.strip()}")
    # Trust is only acceptable because nothing but this machine can connect:
    # TCP on the loopback address only, and no unix socket at all.
    (real_dir / "pg_hba.conf").write_text(
        "# project-local cluster: loopback TCP only, no password\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    with (real_dir / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# streamflow project-local cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
        )


# --- the postmaster ---------------------------------------------------------


def _read_pid_file(real_dir: Path) -> tuple[int, int | None] | None:
    try:
        lines = (real_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    return pid, port


def _is_postgres_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (the postgres OS user)
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            # A killed postmaster whose parent never reaps it (PID 1 in many
            # containers) lingers as a zombie: state "Z" after the ")".
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
            # After a crash the pid may have been reused by another program.
            name = (proc / "comm").read_text().strip()
        except (OSError, IndexError):
            return False
        return state != "Z" and name in {"postgres", "postmaster"}
    result = subprocess.run(
        ["ps", "-o", "comm=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "postgres" in result.stdout or "postmaster" in result.stdout


def status(data_dir: Path = DEFAULT_DATA_DIR) -> ClusterStatus:
    real_dir = Path(os.readlink(data_dir)) if data_dir.is_symlink() else data_dir
    pid_info = _read_pid_file(real_dir)
    running = pid_info is not None and _is_postgres_process(pid_info[0])
    return ClusterStatus(
        data_dir=real_dir,
        initialised=_initialised(real_dir),
        pid=pid_info[0] if running and pid_info else None,
        port=pid_info[1] if running and pid_info else None,
    )


def _start(bindir: Path, real_dir: Path, port: int) -> None:
    log_file = real_dir / LOG_NAME
    for attempt in range(1, START_ATTEMPTS + 1):
        _remove_stale_pid_file(real_dir)
        logger.info("starting PostgreSQL on 127.0.0.1:%d (%s)", port, real_dir)
        result = _run_server_tool(
            [
                str(bindir / "pg_ctl"),
                "start",
                "--pgdata",
                str(real_dir),
                "--wait",
                "--timeout",
                "60",
                "--log",
                str(log_file),
                "--options",
                f"-p {port}",
            ]
        )
        if result.returncode == 0:
            return
        if status(real_dir).running:
            # Another `make db-up` started it in the meantime: that will do.
            return
        # Right after a kill -9 the old server's children may still hold its
        # shared memory for a moment; the next attempt usually succeeds.
        logger.warning("start attempt %d failed: %s", attempt, result.stderr.strip())
        time.sleep(attempt)
    raise LocalDbError(
        f"PostgreSQL did not start in {real_dir} on port {port}. "
        f"Last lines of {log_file}:\n{_tail(log_file)}"
    )


def _remove_stale_pid_file(real_dir: Path) -> None:
    pid_info = _read_pid_file(real_dir)
    if pid_info is None or _is_postgres_process(pid_info[0]):
        return
    logger.warning(
        "removing stale %s/postmaster.pid: server %d is gone (a crash?)",
        real_dir,
        pid_info[0],
    )
    (real_dir / "postmaster.pid").unlink(missing_ok=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read it: {error})"


def _wait_until_ready(settings: PgSettings, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    conninfo = settings.with_database("postgres").conninfo(
        user=SUPERUSER, connect_timeout=3
    )
    while True:
        try:
            with psycopg.connect(conninfo):
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise LocalDbError(
                    f"the local cluster on port {settings.port} does not accept "
                    f"connections: {error}"
                ) from error
            time.sleep(0.2)


def _ensure_role_and_database(settings: PgSettings) -> None:
    conninfo = settings.with_database("postgres").conninfo(user=SUPERUSER)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if settings.user != SUPERUSER:
            exists = conn.execute(
                "select 1 from pg_roles where rolname = %s", [settings.user]
            ).fetchone()
            if not exists:
                logger.info("creating role %s", settings.user)
                conn.execute(
                    sql.SQL("create role {} login createdb").format(
                        sql.Identifier(settings.user)
                    )
                )
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", [settings.dbname]
        ).fetchone()
        if not exists:
            logger.info("creating database %s", settings.dbname)
            conn.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(settings.dbname), sql.Identifier(settings.user)
                )
            )


def check_reachable(settings: PgSettings) -> None:
    try:
        with psycopg.connect(settings.conninfo(connect_timeout=5)) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as error:
        raise LocalDbError(
            f"cannot reach the {settings.describe()}:\n{str(error).strip()}\n"
            "Check PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE, or unset PGHOST "
            "to use the project-local cluster (make db-up)."
        ) from error


# --- public API ---------------------------------------------------------------


def ensure_running(
    settings: PgSettings,
    data_dir: Path = DEFAULT_DATA_DIR,
    bindir: Path | None = None,
) -> None:
    """Make the configured server usable: start the local cluster if that is
    what the settings mean, or just check that the configured one answers."""
    if not settings.local_cluster:
        check_reachable(settings)
        logger.info("using the %s", settings.describe())
        return
    current = status(data_dir)
    if current.running:
        if current.port != settings.port:
            raise LocalDbError(
                f"the local cluster in {current.data_dir} is already running on "
                f"port {current.port}, not {settings.port}; run `make db-down` "
                f"or set PGPORT={current.port}"
            )
        logger.info("local cluster already running (pid %d)", current.pid)
    else:
        bindir = bindir or find_bindir()
        real_dir = resolve_data_dir(data_dir)
        if not _initialised(real_dir):
            _initdb(bindir, real_dir)
        _start(bindir, real_dir, settings.port)
    _wait_until_ready(settings)
    _ensure_role_and_database(settings)
    logger.info("ready: %s", settings.describe())


def stop(
    settings: PgSettings,
    data_dir: Path = DEFAULT_DATA_DIR,
    bindir: Path | None = None,
) -> None:
    if not settings.local_cluster:
        logger.info("PGHOST is set: the configured server is not ours to stop")
        return
    current = status(data_dir)
    if not current.running:
        logger.info("local cluster is not running")
        return
    bindir = bindir or find_bindir()
    logger.info("stopping the local cluster (pid %d)", current.pid)
    result = _run_server_tool(
        [
            str(bindir / "pg_ctl"),
            "stop",
            "--pgdata",
            str(current.data_dir),
            "--mode",
            "fast",
            "--wait",
        ]
    )
    if result.returncode != 0:
        raise LocalDbError(f"pg_ctl stop failed: {result.stderr.strip()}")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = PgSettings.from_env()
    try:
        if args.action == "up":
            ensure_running(settings)
        elif args.action == "down":
            stop(settings)
        elif not settings.local_cluster:
            check_reachable(settings)
            sys.stdout.write(f"reachable: {settings.describe()}\n")
        else:
            current = status()
            state = (
                f"running (pid {current.pid}, port {current.port})"
                if current.running
                else "stopped"
            )
            sys.stdout.write(f"local cluster in {current.data_dir}: {state}\n")
            return 0 if current.running else 3
    except LocalDbError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
