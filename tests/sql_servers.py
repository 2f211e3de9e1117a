"""Real PostgreSQL 15 and MariaDB servers for the SQL store tests.

Each server gets a fresh data directory (initdb / mariadb-install-db) in a temp dir, listens on
127.0.0.1 only, on a free port, and is stopped by PID. Settings trade durability for start-up
speed (no fsync): these are throwaway test servers.

As root, PostgreSQL refuses to run: its data directory is then made in a temp dir owned by the
Debian ``postgres`` system user, and the server runs as that user. MariaDB runs with
``--user=root`` in that case.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest
from servers import IN_CI, ServerProcess, free_port, port_open, require_binary

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
MARIADB_DIRS = ("/usr/sbin", "/usr/bin")

#: The database both servers create for the tests.
DATABASE = "serversession_test"
#: A password-protected user on MariaDB, to show that passwords never leak.
MARIADB_USER = "app"
MARIADB_PASSWORD = "s3cret-Pa55word"


@dataclass
class SQLServer:
    """A running server and how to reach it."""

    process: ServerProcess
    #: SQLAlchemy URL of the test database (psycopg 3 / PyMySQL).
    url: str

    @property
    def port(self) -> int:
        return self.process.port

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        self.process.start()


def _run(argv: list[str], user: str | None = None, timeout: float = 60) -> None:
    result = subprocess.run(argv, capture_output=True, timeout=timeout, user=user, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{output[-3000:]}")


@contextmanager
def _owned_tempdir(prefix: str, user: str | None) -> Iterator[Path]:
    """A temp dir the server's user owns (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class PostgresProcess(ServerProcess):
    """PostgreSQL stops on SIGINT ("fast"): its SIGTERM ("smart") waits for every client to
    disconnect, and a connection pool never does."""

    stop_signal = signal.SIGINT

    def kill(self) -> None:
        """A crash of the whole server: SIGKILL, by PID, the postmaster and every process it
        forked. Killing the postmaster alone would leave its backends running (each one is a
        session leader of its own, so not in our process group) and serving their clients, and
        holding the shared memory that makes a new postmaster refuse to start. The postmaster is
        stopped first, so that it forks nothing while its children are listed, and cannot reap
        them: their PIDs stay theirs until they are killed."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGSTOP)
        children = _children(process.pid)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
        deadline = time.monotonic() + 20
        while any(_running(child) for child in children):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: backends still running after SIGKILL")
            time.sleep(0.01)


def _children(pid: int) -> list[int]:
    """The PIDs of the processes whose parent is ``pid`` (from /proc/*/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead and unreaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# -- PostgreSQL -----------------------------------------------------------------------------------


def _pg_user() -> str | None:
    """The user PostgreSQL runs as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        message = "running as root and there is no postgres system user to run PostgreSQL"
        if IN_CI:
            pytest.fail(f"CI must not skip a store: {message}")
        pytest.skip(message)
    return "postgres"


def _pg_ready(port: int) -> bool:
    if not port_open(port):
        return False
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2
        ):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgresql(settings: Mapping[str, str] | None = None) -> Iterator[SQLServer]:
    """A PostgreSQL server with a ``serversession_test`` database; trust auth on 127.0.0.1.

    ``settings`` (``{"synchronous_commit": "on"}``) are passed as ``-c name=value`` after the
    defaults below, which they override."""
    initdb = require_binary("initdb", "postgresql-15", *PG_BIN_DIRS)
    postgres = require_binary("postgres", "postgresql-15", *PG_BIN_DIRS)
    user = _pg_user()
    with _owned_tempdir("flask-serversession-pg-", user) as root:
        data = root / "data"
        _run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            user=user,
        )
        port = free_port()
        argv = [
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-F",  # fsync off
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "max_connections=60",
            "-c",
            "log_min_messages=warning",
        ]
        for name, value in (settings or {}).items():
            argv += ["-c", f"{name}={value}"]
        process = PostgresProcess(
            f"postgres-{port}", argv, port, root, ready=lambda: _pg_ready(port), user=user
        )
        process.start()
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
            yield SQLServer(process, url)
        finally:
            process.stop()


# -- MariaDB --------------------------------------------------------------------------------------


def _mariadb_ready(port: int) -> bool:
    if not port_open(port):
        return False
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()
    except pymysql.MySQLError:
        return False
    return True


@contextmanager
def mariadb(options: Sequence[str] = ()) -> Iterator[SQLServer]:
    """A MariaDB server with a ``serversession_test`` database and a user with a password.

    ``options`` (``["--innodb-doublewrite=1"]``) are given to mariadbd after the defaults below,
    which they override."""
    install = require_binary("mariadb-install-db", "mariadb-server", *MARIADB_DIRS)
    mariadbd = require_binary("mariadbd", "mariadb-server", *MARIADB_DIRS)
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    with _owned_tempdir("flask-serversession-mariadb-", None) as root:
        data = root / "data"
        common = [
            "--no-defaults",  # not the system's /etc/mysql config
            f"--datadir={data}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-doublewrite=0",
            "--skip-log-bin",
            # MariaDB's own default, latin1, on purpose: the store must not depend on it.
            "--character-set-server=latin1",
        ]
        _run(
            [
                install,
                *common[:2],
                *as_root,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            timeout=120,
        )
        port = free_port()
        argv = [
            mariadbd,
            *common,
            *as_root,
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={root / 'mariadb.sock'}",
            f"--pid-file={root / 'mariadb.pid'}",
            "--skip-networking=0",
            "--max-connections=80",
            "--performance-schema=0",
            *options,
        ]
        process = ServerProcess(
            f"mariadb-{port}", argv, port, root, ready=lambda: _mariadb_ready(port)
        )
        process.start()
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
                    cursor.execute(
                        f"CREATE USER '{MARIADB_USER}'@'127.0.0.1'"
                        f" IDENTIFIED BY '{MARIADB_PASSWORD}'"
                    )
                    cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{MARIADB_USER}'@'127.0.0.1'")
            finally:
                conn.close()
            url = f"mysql+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{port}/{DATABASE}"
            yield SQLServer(process, url)
        finally:
            process.stop()
