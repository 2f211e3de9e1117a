"""Server processes for the benchmarks: redis-server and gunicorn here, PostgreSQL and MariaDB in
sql_bench.py on the same :class:`ServerProcess`, all on 127.0.0.1 and a free port.

Adapted from tests/servers.py and tests/redis_servers.py (the benchmarks import nothing from
tests/): each process runs in its own session, in a temporary directory, and is stopped by its
PID (SIGTERM or the server's own stop signal, then SIGKILL if it lingers), also when the run
fails or is interrupted.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"


class Unavailable(Exception):
    """A tool the benchmark needs is missing; the variants that need it are skipped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def find_binary(name: str, *extra_dirs: str, path_first: bool = True) -> str | None:
    """The path of ``name`` on PATH or in one of ``extra_dirs`` (PATH first unless
    ``path_first`` is false), or None."""
    if path_first and (found := shutil.which(name)):
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None if path_first else shutil.which(name)


def require_binary(name: str, package: str, *extra_dirs: str) -> str:
    """The path of ``name`` in one of ``extra_dirs`` or else on PATH; :class:`Unavailable`
    naming the Debian ``package`` when there is none."""
    path = find_binary(name, *extra_dirs, path_first=False)
    if path is None:
        raise Unavailable(f"{name} not installed (Debian package {package})")
    return path


class ServerProcess:
    """One server process, in a session of its own, stopped by its PID. ``argv`` must make it
    listen on 127.0.0.1:``port`` only."""

    #: The signal that shuts the server down.
    stop_signal = signal.SIGTERM
    #: What a failed start raises.
    start_error: type[Exception] = RuntimeError
    start_timeout = 30.0
    stop_timeout = 20.0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        workdir: Path,
        *,
        ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.workdir = workdir
        self.ready = ready or (lambda: port_open(port))
        self.env = env
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self, timeout: float | None = None) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        assert self.process is None or self.process.poll() is not None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                user=self.user,
                start_new_session=True,  # our signals only, never the terminal's
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise self.start_error(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise self.start_error(f"{self.name} not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float | None = None) -> None:
        """The stop signal by PID, then SIGKILL if it lingers."""
        timeout = self.stop_timeout if timeout is None else timeout
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, self.stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def stopped_at_exit(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``server`` and stop it by PID however the block ends (error, Ctrl-C, SIGTERM)."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- redis-server --------------------------------------------------------------------------------


def redis_server_binary() -> str:
    """redis-server's path; :class:`Unavailable` with the reason when it cannot run."""
    path = find_binary("redis-server", "/usr/sbin", "/usr/local/bin")
    if path is None:
        raise Unavailable(
            "redis-server not installed (Debian package redis-server; make servers installs it"
            " as root)"
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        raise Unavailable("redis-py not installed: pip install -e '.[redis]'") from None
    return path


def _ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=HOST, port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def redis_process(workdir: Path) -> ServerProcess:
    """One redis-server on 127.0.0.1 and a free port, without persistence, not started yet."""
    binary = redis_server_binary()
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return ServerProcess(f"redis-{port}", argv, port, workdir, ready=lambda: _ping(port))


# -- memcached -----------------------------------------------------------------------------------


def memcached_process(workdir: Path) -> ServerProcess:
    """One memcached on 127.0.0.1 and a free port, TCP only, 64 MB, not started yet."""
    binary = find_binary("memcached", "/usr/bin", "/usr/local/bin")
    if binary is None:
        raise Unavailable(
            "memcached not installed (Debian package memcached; make servers installs it as root)"
        )
    try:
        import pymemcache  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise Unavailable("pymemcache not installed: pip install -e '.[memcached]'") from None
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:  # memcached refuses to run as root without -u
        argv += ["-u", "nobody"]
    return ServerProcess(f"memcached-{port}", argv, port, workdir)


# -- gunicorn ------------------------------------------------------------------------------------


def http_get(port: int, path: str, cookie: str | None = None) -> tuple[int, str, list[str]]:
    """``GET path`` on 127.0.0.1:``port``: status, body and the Set-Cookie headers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, body, response.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()


def _answers(port: int) -> bool:
    try:
        return http_get(port, "/none")[0] == 200
    except OSError:
        return False


def gunicorn_process(
    python: str, app: str, workdir: Path, workers: int, env: dict[str, str], name: str
) -> ServerProcess:
    """gunicorn with ``workers`` sync workers serving ``app`` on 127.0.0.1 and a free port."""
    port = free_port()
    argv = [
        python,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"{HOST}:{port}",
        "--pythonpath",
        str(Path(__file__).resolve().parent),
        "--log-level",
        "warning",
        app,
    ]
    return ServerProcess(
        f"gunicorn-{name}-{port}",
        argv,
        port,
        workdir,
        ready=lambda: _answers(port),
        env={**os.environ, **env},
    )
