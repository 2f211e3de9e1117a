"""The management API's ``revoke_all``: it streams, on every store that can list sessions.

It revokes page by page while the store's scan goes on, so these tests use more sessions than
one page of a scan (1,200; every store reads 500 at a time) on memory, SQLite, Redis,
PostgreSQL and MariaDB, and check from both sides that all of them are over: through the
management API (by handle) and, for sessions a test client made, through HTTP (the old cookie
gives an empty session). A store failing midway is a real Redis server killed mid-run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis_servers import standalone
from servers import ServerProcess

from flask_serversession import ServerSession, SessionManager, Store, store_from_url
from flask_serversession.errors import SessionStoreUnavailable, UnsupportedOperation
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Record, Touch
from flask_serversession.testing import CountingStore, make_app

#: More sessions than one page of any store's scan (500), and not a multiple of it.
MANY = 1200
BATCH = 500


@pytest.fixture
def store(listing_store: Store) -> Store:
    """A fresh, empty store of each kind that can list sessions."""
    return listing_store


class Watching(CountingStore):
    """Counts the sessions its scan has handed out so far, in :attr:`listed`."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.listed = 0

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        self.calls["scan"] += 1
        for item in self.inner.scan(now):
            self.listed += 1
            yield item

    def deleted(self) -> list[str]:
        return [key for method, key in self.log if method == "delete"]


def fill(store: Store, count: int) -> list[str]:
    """``count`` live sessions written straight into ``store``; their handles."""
    now = time.time()
    handles = []
    for n in range(count):
        handle = store_key(new_session_id())
        record = Record({"n": json.dumps(n)}, now, now, now + 3600, now + 86400)
        assert store.create(handle, record)
        handles.append(handle)
    return handles


def device(app: Flask, user: str) -> tuple[FlaskClient, str]:
    """A test client logged in as ``user`` with a value in its session; and its handle."""
    client = app.test_client()
    client.get(f"/set/device/{user}")
    client.get(f"/login/{user}")
    who: dict[str, Any] = client.get("/whoami").get_json()
    assert who["user"] == user
    return client, who["handle"]


def manager_of(app: Flask) -> SessionManager:
    return ServerSession.manager(app)


def test_revoke_all_streams_page_by_page(store: Store) -> None:
    watching = Watching(store)
    app = make_app(watching, cleanup_batch_size=BATCH)
    clients = [device(app, user) for user in ("alice", "bob", "carol")]
    handles = fill(store, MANY - len(clients)) + [handle for _, handle in clients]
    manager = manager_of(app)
    assert manager.count() == MANY
    watching.listed = 0

    reported: list[int] = []
    listed_then: list[int] = []

    def progress(revoked: int) -> None:
        reported.append(revoked)
        listed_then.append(watching.listed)

    assert manager.revoke_all(progress=progress) == MANY
    assert reported == [500, 500, 200] and sum(reported) == MANY
    # Each batch was revoked while the scan went on: when it was reported, the scan had handed
    # out only the sessions revoked so far, not all of them first.
    assert listed_then == [500, 1000, 1200]
    # Each session revoked exactly once: a tombstone, as revoke() leaves.
    deleted = watching.deleted()
    assert len(deleted) == MANY and set(deleted) == set(handles)

    assert manager.count() == 0 and list(manager.all()) == []
    for handle in handles:
        assert manager.get(handle) is None
        record = store.load(handle)
        assert record is not None and record.ended
    assert not manager.revoke(handles[0])
    # The old cookies give an empty session.
    for client, _ in clients:
        assert client.get("/whoami").get_json() == {"user": None, "handle": None, "auth": None}
        assert client.get("/get/device").text == "None"

    # Nothing left: nothing revoked, nothing reported.
    reported.clear()
    assert manager.revoke_all(progress=progress) == 0 and reported == []


def test_revoke_all_while_sessions_come_and_go(store: Store) -> None:
    """Sessions created, refreshed and ended while it runs: every session live for the whole
    run is revoked, nothing is revoked twice, and the count is what was revoked."""
    watching = Watching(store)
    app = make_app(watching, cleanup_batch_size=100)
    handles = fill(store, MANY)
    kept_busy = handles[::7]
    ended_meanwhile = set(handles[3::50])
    created: list[str] = []

    def progress(revoked: int) -> None:
        # Between two batches: new logins, activity on sessions, logouts.
        created.extend(fill(store, 20))
        for handle in ended_meanwhile:
            store.delete(handle, tombstone_until=time.time() + 600)
        now = time.time()
        for handle in kept_busy[:30]:
            store.load(handle, Touch(now, now + 3600, if_seen_before=now + 1))

    revoked = manager_of(app).revoke_all(progress=progress)
    deleted = watching.deleted()
    assert revoked == len(deleted) == len(set(deleted))
    # Live from start to end: all revoked.
    assert set(handles) - ended_meanwhile <= set(deleted)
    # Sessions created during the run may or may not have been seen; those seen were revoked.
    assert set(deleted) <= set(handles) | set(created)
    for handle in handles:
        record = store.load(handle)
        assert record is not None and record.ended


class KillsItsServer(CountingStore):
    """A real Redis store whose server is killed (SIGKILL) right after the ``after``-th delete:
    the next call meets a real connection error."""

    def __init__(self, inner: Store, kill: Callable[[], None], after: int) -> None:
        super().__init__(inner)
        self.kill = kill
        self.after = after

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        super().delete(key, tombstone_until)
        if self.calls["delete"] == self.after:
            self.kill()


def test_revoke_all_reports_what_it_did_before_the_store_failed(tmp_path: Path) -> None:
    with standalone(tmp_path / "redis") as server:
        inner = store_from_url(f"redis://127.0.0.1:{server.port}/0?socket_timeout=2")
        try:
            fill(inner, MANY)
            failing = KillsItsServer(inner, server.kill, after=700)
            app = make_app(failing, cleanup_batch_size=BATCH)
            reported: list[int] = []
            with pytest.raises(SessionStoreUnavailable):
                manager_of(app).revoke_all(progress=reported.append)
            # The sum of the progress calls is what was revoked before the failure.
            assert reported == [500, 200]
            assert failing.calls["delete"] == 701  # the 701st met the dead server
        finally:
            inner.close()


def test_revoke_all_needs_scan(memcached_server: ServerProcess) -> None:
    url = f"memcached://127.0.0.1:{memcached_server.port}?prefix=m{uuid.uuid4().hex[:12]}:"
    memcached = store_from_url(url)
    try:
        with pytest.raises(UnsupportedOperation):
            manager_of(make_app(memcached)).revoke_all()
    finally:
        memcached.close()
