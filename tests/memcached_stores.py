"""Memcached stores for the tests, on the servers of memcached_servers: each test gets an
empty store (a fresh key prefix on a shared server), closed after it by the
``close_memcached_stores`` fixture (conftest.py), and the raw server beside it to look at."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient
from pymemcache.client.base import Client  # type: ignore[import-untyped]
from servers import ServerProcess

from flask_serversession import store_from_url
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Record, Store
from flask_serversession.stores.memcached import MemcachedStore

HOUR = 3600.0
DAY = 24 * HOUR


def fresh_prefix() -> str:
    """A fresh key prefix: an empty store per test on a shared server."""
    return f"t{uuid.uuid4().hex[:12]}:"


def _url(servers: list[ServerProcess], **options: str) -> str:
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    query = "&".join(
        f"{name}={value}" for name, value in {"prefix": fresh_prefix(), **options}.items()
    )
    return f"memcached://{hosts}?{query}"


_opened: list[Store] = []


def close_opened() -> None:
    """Close every store opened since the last call."""
    while _opened:
        _opened.pop().close()


def open_store(servers: list[ServerProcess], **options: str) -> MemcachedStore:
    store = store_from_url(_url(servers, **options))
    assert isinstance(store, MemcachedStore)
    _opened.append(store)
    return store


def admin_client(server: ServerProcess) -> Any:
    return Client(("127.0.0.1", server.port), default_noreply=False, timeout=5)


def server_stats(server: ServerProcess) -> dict[str, int]:
    admin = admin_client(server)
    try:
        raw = admin.stats()
    finally:
        admin.close()
    return {name.decode(): value for name, value in raw.items() if isinstance(value, int)}


def fresh_key() -> str:
    return store_key(new_session_id())


def make_record(now: float, idle: float = HOUR, absolute: float = DAY, **values: str) -> Record:
    return Record(dict(values), now, now, now + idle, now + absolute)


def session_key(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return store_key(cookie.value.split(".")[0])


def store_at(port: int) -> MemcachedStore:
    store = store_from_url(f"memcached://127.0.0.1:{port}?timeout=0.3&connect_timeout=0.3")
    assert isinstance(store, MemcachedStore)
    _opened.append(store)
    return store
