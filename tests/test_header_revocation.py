"""A header token revoked through the management API or the CLI is refused on the very next
request, on every worker: two server processes share one store, and both are asked right
after the revoke (issue 17's revocation test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import HttpResponse, request
from servers import ServerProcess, free_port
from store_urls import fresh_store_url

from flask_serversession import ServerSession, SessionManager
from flask_serversession.stores import store_from_url
from flask_serversession.stores.sql import SQLStore

TESTS = Path(__file__).resolve().parent
SECRET = "revocation-secret"


class Workers:
    """Two worker processes on one store, and the CLI on it."""

    def __init__(self, urls: list[str], env: dict[str, str]) -> None:
        self.urls = urls
        self.env = env

    def login(self, worker: int, user: str) -> str:
        response = request(self.urls[worker], f"/login/{user}", method="POST")
        assert response.status == 200, response.body
        token = response.header_values("X-Session-Token")
        assert len(token) == 1 and token[0]
        return token[0]

    def me(self, worker: int, token: str) -> HttpResponse:
        return request(self.urls[worker], "/me", headers={"Authorization": f"Bearer {token}"})

    def handle(self, token: str) -> str:
        response = self.me(0, token)
        assert response.status == 200, response.body
        handle: str = json.loads(response.body)["handle"]
        return handle

    def assert_accepted(self, token: str, user: str) -> None:
        for worker in range(len(self.urls)):
            response = self.me(worker, token)
            assert response.status == 200, (worker, response.body)
            assert json.loads(response.body)["user"] == user
            assert response.header_values("X-Session-Token") == []  # nothing new to say

    def assert_refused(self, token: str) -> None:
        for worker in range(len(self.urls)):
            response = self.me(worker, token)
            assert response.status == 401, (worker, response.body)
            assert response.header_values("X-Session-Token") == [""]  # "it is over"

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "header_worker:create_app", *args],
            cwd=TESTS,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(params=["sqlite", "redis", "memcached", "postgresql", "mariadb"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    url = fresh_store_url(request, request.param, tmp_path)
    store = store_from_url(url)
    store.load("warm-up")  # an SQL store makes its table once, before the workers race to
    env = {**os.environ, "WORKER_STORE": url, "WORKER_SECRET": SECRET}
    processes = []
    try:
        for n in range(2):
            port = free_port()
            argv = [sys.executable, str(TESTS / "header_worker.py"), str(port)]
            process = ServerProcess(f"worker{n}", argv, port, tmp_path, env=env)
            processes.append(process)
            process.start()
        yield Workers([f"http://127.0.0.1:{p.port}" for p in processes], env)
    finally:
        for process in processes:
            process.stop()
        if isinstance(store, SQLStore):
            store.table.drop(store.engine, checkfirst=True)
        store.close()


def test_revoked_through_the_api_or_the_cli_refused_at_once_on_every_worker(
    workers: Workers,
) -> None:
    from header_worker import create_app

    manager = ServerSession.manager(create_app(workers.env["WORKER_STORE"], SECRET))
    try:
        _revoke_every_way(workers, manager)
    finally:
        manager.store.close()


def _revoke_every_way(workers: Workers, manager: SessionManager) -> None:
    token = workers.login(0, "alice")
    workers.assert_accepted(token, "alice")
    assert manager.revoke(workers.handle(token))
    workers.assert_refused(token)

    token = workers.login(1, "alice")
    workers.assert_accepted(token, "alice")
    out = workers.cli("sessions", "revoke", workers.handle(token))
    assert "Revoked session" in out
    workers.assert_refused(token)

    if manager.store.capabilities.by_user:  # "log out everywhere", by API and by CLI
        tokens = [workers.login(n, "bob") for n in (0, 1)]
        assert manager.revoke_user("bob") == 2
        for token in tokens:
            workers.assert_refused(token)
        tokens = [workers.login(n, "carol") for n in (0, 1)]
        workers.cli("sessions", "revoke-user", "carol")
        for token in tokens:
            workers.assert_refused(token)
