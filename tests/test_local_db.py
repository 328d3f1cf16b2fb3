"""The project-local cluster, for real: a throwaway cluster on a free port in a
temporary folder, started, restarted after a kill -9, and stopped.

The binary search is tested against folders the test lays out itself, so
that "no binaries at all" can be checked on a machine that has them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from scripts import local_db
from scripts.local_db import LocalDbError, ensure_running, find_bindir, status, stop
from scripts.settings import PgSettings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_settings(port: int) -> PgSettings:
    return PgSettings(
        host="127.0.0.1",
        port=port,
        user="streamflow",
        password="",
        dbname="streamflow",
        local_cluster=True,
    )


def make_programs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in local_db.SERVER_PROGRAMS:
        program = folder / name
        program.write_text("#!/bin/sh\nexit 1\n")
        program.chmod(0o755)
    return folder


# --- finding binaries ---------------------------------------------------------


def test_no_binaries_anywhere_says_how_to_install_or_configure(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LocalDbError) as raised:
        find_bindir(path_env=str(empty), patterns=[f"{tmp_path}/nothing/*/bin"])
    message = str(raised.value)
    assert "No PostgreSQL server binaries" in message
    assert "apt-get install postgresql" in message
    assert "brew install postgresql@16" in message
    assert "PGHOST" in message


def test_a_folder_missing_one_program_is_skipped(tmp_path: Path) -> None:
    incomplete = make_programs(tmp_path / "pg" / "17" / "bin")
    (incomplete / "initdb").unlink()
    complete = make_programs(tmp_path / "pg" / "14" / "bin")
    assert find_bindir(path_env="", patterns=[f"{tmp_path}/pg/*/bin"]) == complete


def test_newest_version_wins_among_system_folders(tmp_path: Path) -> None:
    for version in ("9", "15", "16"):
        make_programs(tmp_path / "pg" / version / "bin")
    found = find_bindir(path_env="", patterns=[f"{tmp_path}/pg/*/bin"])
    assert found == tmp_path / "pg" / "16" / "bin"


def test_path_comes_first_and_symlinks_lead_to_the_real_folder(tmp_path: Path) -> None:
    real = make_programs(tmp_path / "real" / "bin")
    on_path = tmp_path / "on_path"
    on_path.mkdir()
    (on_path / "pg_ctl").symlink_to(real / "pg_ctl")
    make_programs(tmp_path / "pg" / "99" / "bin")
    found = find_bindir(path_env=str(on_path), patterns=[f"{tmp_path}/pg/*/bin"])
    assert found == real


# --- a configured server -------------------------------------------------------


def test_unreachable_configured_server_is_a_clear_error() -> None:
    settings = PgSettings("127.0.0.1", free_port(), "nobody", "", "nowhere", False)
    with pytest.raises(LocalDbError, match="cannot reach the configured server"):
        ensure_running(settings)


# --- a real throwaway cluster ---------------------------------------------------


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PgSettings, Path]]:
    try:
        find_bindir()
    except LocalDbError as error:
        pytest.skip(str(error))
    settings = local_settings(free_port())
    data_dir = tmp_path_factory.mktemp("cluster") / ".pgdata"
    ensure_running(settings, data_dir)
    yield settings, data_dir
    stop(settings, data_dir)
    real_dir = status(data_dir).data_dir
    shutil.rmtree(real_dir, ignore_errors=True)
    data_dir.unlink(missing_ok=True)


def current_user(settings: PgSettings) -> tuple[str, bool, bool]:
    with psycopg.connect(settings.conninfo(connect_timeout=5)) as conn:
        row = conn.execute(
            "select current_user, rolsuper, rolcreatedb from pg_roles "
            "where rolname = current_user"
        ).fetchone()
    assert row is not None
    return row


def wait_until_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while local_db._is_postgres_process(pid):
        assert time.monotonic() < deadline, f"postmaster {pid} survived kill -9"
        time.sleep(0.05)


def test_cluster_serves_the_platform_role(cluster: tuple[PgSettings, Path]) -> None:
    settings, data_dir = cluster
    assert current_user(settings) == ("streamflow", False, True)
    # Only a superuser may read the socket setting.
    with psycopg.connect(settings.conninfo(user=local_db.SUPERUSER)) as conn:
        listen = conn.execute("show listen_addresses").fetchone()
        sockets = conn.execute("show unix_socket_directories").fetchone()
    assert listen == ("127.0.0.1",)
    assert sockets == ("",)
    if os.geteuid() == 0:
        # tmp_path is private to root, so the data moved to /tmp behind a link.
        assert data_dir.is_symlink()
        assert str(os.readlink(data_dir)).startswith("/tmp/streamflow-pg-")


def test_second_call_keeps_the_running_server(cluster: tuple[PgSettings, Path]) -> None:
    settings, data_dir = cluster
    pid = status(data_dir).pid
    ensure_running(settings, data_dir)
    assert status(data_dir).pid == pid


def test_restarts_after_kill_9_with_a_stale_pid_file(
    cluster: tuple[PgSettings, Path],
) -> None:
    settings, data_dir = cluster
    old_pid = status(data_dir).pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_until_dead(old_pid)
    assert (status(data_dir).data_dir / "postmaster.pid").exists()
    assert not status(data_dir).running

    ensure_running(settings, data_dir)

    new_status = status(data_dir)
    assert new_status.running and new_status.pid != old_pid
    assert current_user(settings)[0] == "streamflow"


def test_restarts_when_the_stale_pid_now_belongs_to_another_program(
    cluster: tuple[PgSettings, Path],
) -> None:
    """After a crash and reboot the old pid may be reused; PostgreSQL alone
    would refuse to start ("lock file already exists")."""
    settings, data_dir = cluster
    old_pid = status(data_dir).pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_until_dead(old_pid)
    pid_file = status(data_dir).data_dir / "postmaster.pid"
    with subprocess.Popen(["sleep", "60"]) as impostor:
        try:
            lines = pid_file.read_text().splitlines()
            pid_file.write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
            ensure_running(settings, data_dir)
            assert status(data_dir).pid not in (None, impostor.pid)
            assert current_user(settings)[0] == "streamflow"
        finally:
            impostor.kill()


def test_running_on_another_port_is_reported(cluster: tuple[PgSettings, Path]) -> None:
    settings, data_dir = cluster
    with pytest.raises(LocalDbError, match=f"already running on port {settings.port}"):
        ensure_running(local_settings(free_port()), data_dir)


def test_stop_then_start_again(cluster: tuple[PgSettings, Path]) -> None:
    settings, data_dir = cluster
    stop(settings, data_dir)
    assert not status(data_dir).running
    stop(settings, data_dir)  # already stopped: nothing to do, no error
    ensure_running(settings, data_dir)
    assert current_user(settings)[0] == "streamflow"
