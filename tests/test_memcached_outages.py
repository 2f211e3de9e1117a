"""The Memcached store when its servers fail: stopped, restarted, one of two down, a full
pool, and every kind of driver error (from a fake server) becoming SessionStoreUnavailable.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from memcached_servers import running
from memcached_stores import (
    HOUR,
    admin_client,
    fresh_key,
    make_record,
    open_store,
    session_key,
    store_at,
)
from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from servers import ServerProcess, free_port

from flask_serversession import ConfigurationError, SessionStoreUnavailable
from flask_serversession.stores import Patch, Store
from flask_serversession.stores.memcached import MemcachedStore, StrictHashClient
from flask_serversession.testing import make_app

#: Every store a test opens with memcached_stores is closed after it, even when it fails.
pytestmark = pytest.mark.usefixtures("close_memcached_stores")


# -- outages --------------------------------------------------------------------------------------


def _production_app(store: Store) -> tuple[Flask, FlaskClient]:
    app = make_app(store)
    app.testing = False  # errors become responses, as in production
    return app, app.test_client()


def _warm_pool(store: MemcachedStore, connections: int) -> None:
    """Open ``connections`` pooled connections and leave them idle in the pool."""
    pool = store.client.client_pool
    held = [pool.get() for _ in range(connections)]
    for each in held:
        each.version()
    for each in held:
        pool.release(each)


@pytest.mark.slow
def test_server_stopped_mid_run(tmp_path: Path) -> None:
    """While memcached is down, requests that touch the session answer 503 and the others 200.
    After a restart it works again without restarting the app; the sessions were lost with the
    restart (memcached keeps nothing on disk), so the user gets a fresh anonymous session."""
    with running(tmp_path) as (server,):
        store = open_store([server], connect_timeout="1", timeout="1")
        _, client = _production_app(store)
        assert client.get("/set/user/alice").status_code == 200
        assert client.get("/get/user").text == "'alice'"
        old_cookie = client.get_cookie("session")
        _warm_pool(store, 4)

        server.stop()
        for path in ("/get/user", "/set/user/bob", "/rw/user/carol", "/get/user"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.status_code)
            assert "Retry-After" in response.headers
            assert "alice" not in response.text
        assert client.get("/none").status_code == 200

        server.start()
        response = client.get("/get/user")
        assert (response.status_code, response.text) == (200, "None")
        assert "Set-Cookie" not in response.headers  # nothing stored, nothing sent
        response = client.get("/set/user/dave")
        assert response.status_code == 200 and "Set-Cookie" in response.headers
        new_cookie = client.get_cookie("session")
        assert old_cookie is not None and new_cookie is not None
        assert new_cookie.value != old_cookie.value  # a new session, not the old ID re-adopted
        assert client.get("/get/user").text == "'dave'"
        store.close()


@pytest.mark.slow
def test_restart_between_requests_costs_no_request(tmp_path: Path) -> None:
    """Pooled connections that outlived a restart are broken; the first one found broken
    discards the idle rest and the command is repeated on a fresh connection, so no request
    fails for it."""
    with running(tmp_path) as (server,):
        store = open_store([server])
        _, client = _production_app(store)
        assert client.get("/set/user/alice").status_code == 200
        _warm_pool(store, 5)
        server.restart()  # no request while it was down
        statuses = [client.get(path).status_code for path in ("/get/user", "/set/a/1") * 3]
        assert statuses == [200] * 6
        assert client.get("/get/a").text == "'1'"
        store.close()


@pytest.mark.slow
def test_dead_server_of_two_is_an_error_not_a_miss(tmp_path: Path) -> None:
    """With two servers and one down, the sessions on the dead one answer 503 on every
    request (never "no session"), and the others keep working."""
    with running(tmp_path, 2) as servers:
        store = open_store(servers, connect_timeout="1", timeout="1")
        app, _ = _production_app(store)
        clients: dict[int, FlaskClient] = {}
        admins = [admin_client(server) for server in servers]
        while len(clients) < 2:
            client = app.test_client()
            assert client.get("/set/user/alice").status_code == 200
            home = next(
                n
                for n, admin in enumerate(admins)
                if admin.get(store._key(session_key(client))) is not None
            )
            clients.setdefault(home, client)
        for admin in admins:
            admin.close()
        servers[0].stop()
        for _ in range(3):  # a stock HashClient would answer "miss" from the second try on
            assert clients[0].get("/get/user").status_code == 503
            assert clients[0].get("/set/user/bob").status_code == 503
            assert clients[1].get("/get/user").text == "'alice'"
        servers[0].start()
        assert clients[0].get("/get/user").text == "None"  # lost with the restart
        assert clients[1].get("/get/user").text == "'alice'"
        store.close()


def test_stock_hash_client_hides_an_outage_and_is_refused() -> None:
    """Why :class:`StrictHashClient` exists: pymemcache's HashClient, even with
    ignore_exc=False, raises on the first failure and then answers "miss"."""
    dead = ("127.0.0.1", free_port())
    stock = HashClient([dead], retry_attempts=2, retry_timeout=60, connect_timeout=1)
    with pytest.raises(ConnectionRefusedError):
        stock.get("k")
    assert stock.get("k") is None  # a silent miss: an empty session for its user
    with pytest.raises(ConfigurationError, match="StrictHashClient"):
        MemcachedStore(stock)
    strict = StrictHashClient([dead], use_pooling=True, connect_timeout=1)
    store = MemcachedStore(strict)
    for _ in range(3):
        with pytest.raises(SessionStoreUnavailable) as info:
            store.load(fresh_key())
        assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_pool_exhausted_is_unavailable(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server], max_pool_size="1")
    held = store.client.client_pool.get()
    with pytest.raises(SessionStoreUnavailable, match="pool exhausted"):
        store.load(fresh_key())
    store.client.client_pool.release(held)
    assert store.load(fresh_key()) is None
    store.close()


# -- driver errors, from a fake server -------------------------------------------------------------


@contextmanager
def fake_server(reply: bytes | None) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers every command with ``reply``, closes the
    connection at once when ``reply`` is empty, or never answers when it is None."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port: int = listener.getsockname()[1]
    done = threading.Event()
    open_connections: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            open_connections.append(conn)
            if reply == b"":
                conn.close()
                continue
            while reply is not None and not done.is_set():
                try:
                    if not conn.recv(65536):
                        break
                    conn.sendall(reply)
                except TimeoutError:
                    continue
                except OSError:
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        thread.join(timeout=10)
        listener.close()
        for conn in open_connections:
            conn.close()


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (None, "TimeoutError"),
        # a closed connection reads as EOF or, when our send crossed the close, as a reset
        (b"", "MemcacheUnexpectedCloseError ConnectionResetError BrokenPipeError"),
        (b"SERVER_ERROR out of memory storing object\r\n", "MemcacheServerError"),
        (b"garbage\r\n", "MemcacheUnknownError"),
    ],
)
def test_driver_errors_become_unavailable(reply: bytes | None, cause: str) -> None:
    with fake_server(reply) as port:
        store = store_at(port)
        now = time.time()
        for operation in (
            lambda: store.load(fresh_key()),
            lambda: store.create(fresh_key(), make_record(now)),
            lambda: store.delete(fresh_key(), now + 60),
        ):
            with pytest.raises(SessionStoreUnavailable) as info:
                operation()
            name = type(info.value.__cause__).__name__
            assert name in cause.split()
            assert name in info.value.reason and "127.0.0.1" in str(info.value)


def test_connection_refused_is_unavailable() -> None:
    store = store_at(free_port())
    with pytest.raises(SessionStoreUnavailable) as info:
        store.patch(fresh_key(), Patch({"a": "1"}, (), time.time(), time.time() + HOUR))
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
