"""gunicorn serving ``reliability_app`` on 127.0.0.1 and a free port, stopped by PID; and a small
HTTP client that sends exactly the cookie it is given.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from servers import ServerProcess, free_port
from store_urls import fresh_store_url

HERE = Path(__file__).resolve().parent
COOKIE = "session"
#: The stores two gunicorn workers can share. Not memory: each worker process would hold its
#: own dict, so a session written by one worker would not exist in the other.
SHARED_STORES = ["sqlite", "redis", "memcached", "postgresql", "mariadb"]
#: Seconds a client waits for a response.
TIMEOUT = 15.0


@dataclass
class Reply:
    status: int
    text: str
    headers: http.client.HTTPMessage

    def cookie(self) -> str | None:
        """The value of the session cookie this response sets (``""`` when it deletes it), or
        None when it sends none."""
        for header in self.headers.get_all("Set-Cookie") or []:
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            if COOKIE in parsed:
                return parsed[COOKIE].value
        return None


def get(port: int, path: str, cookie: str | None = None, timeout: float = TIMEOUT) -> Reply:
    """``GET path`` on 127.0.0.1:``port`` with exactly this session cookie (or none)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return Reply(response.status, text, response.headers)
    finally:
        conn.close()


def shared_store_url(request: pytest.FixtureRequest, name: str, workdir: Path) -> str:
    """The URL of a fresh, empty store of kind ``name`` that two workers can share."""
    assert name != "memory", "a memory store cannot be shared by two workers"
    return fresh_store_url(request, name, workdir)


def _answers(port: int) -> bool:
    try:
        return get(port, "/none", timeout=2).status == 200
    except OSError:
        return False


@contextmanager
def gunicorn(
    workdir: Path, store_url: str, *, workers: int = 2, threads: int = 2
) -> Iterator[ServerProcess]:
    """gunicorn (gthread workers) serving the reliability app on ``store_url``; yields the
    running process (``.port``, ``.pid``, ``.workdir / "sync"`` for the meeting files)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sync = workdir / "sync"
    sync.mkdir(exist_ok=True)
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
        "--bind", f"127.0.0.1:{port}", "--pythonpath", str(HERE),
        "--graceful-timeout", "5", "--log-level", "warning",
        "reliability_app:app",
    ]  # fmt: skip
    env = {**os.environ, "FSS_STORE": store_url, "FSS_SYNC_DIR": str(sync)}
    server = ServerProcess(
        f"gunicorn-{port}", argv, port, workdir, ready=lambda: _answers(port), env=env
    )
    try:
        server.start(timeout=60)
        yield server
    finally:
        server.stop()


def parent_pid(pid: int) -> int:
    """The parent of process ``pid`` (from /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])
