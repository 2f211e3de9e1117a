"""The SQLite store for real: several processes, a locked or broken file, cleanup under load."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from flask import Flask

from flask_serversession import ConfigurationError, ServerSession, SessionStoreUnavailable
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record
from flask_serversession.stores.sqlite import SQLiteStore
from flask_serversession.testing import make_app

HOUR = 3600.0


def _record(now: float, idle: float = HOUR) -> Record:
    return Record({}, now, now, now + idle, now + 24 * HOUR)


def _writer(path: str, key: str, worker: int, count: int) -> None:
    store = SQLiteStore(path)
    for i in range(count):
        now = time.time()
        assert store.patch(key, Patch({f"w{worker}-{i}": str(i)}, (), now, now + HOUR))
    store.close()


def test_processes_share_one_file_without_losing_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    store = SQLiteStore(path)
    key = store_key(new_session_id())
    assert store.create(key, _record(time.time()))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, key, n, 100)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    record = store.load(key)
    assert record is not None and len(record.values) == 400
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _client_app(path: Path, **options: float) -> Flask:
    return make_app(SQLiteStore(path, timeout=0.2), **options)


def test_locked_database_answers_503_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    app = _client_app(path)
    app.testing = False  # as in production: errors become responses
    client = app.test_client()
    client.get("/set/user/alice")

    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        response = client.get("/rw/user/bob")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert str(path) not in response.text  # details go to the log, not to the client
        assert client.get("/get/user").text == "'alice'"  # WAL: readers are not blocked
        assert client.get("/none").status_code == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert client.get("/rw/user/carol").status_code == 200
    assert client.get("/get/user").text == "'carol'"


def test_broken_file_is_an_outage_not_an_empty_session(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    app = _client_app(path)
    app.testing = False
    client = app.test_client()
    client.get("/set/user/alice")
    store = app.session_interface.store  # type: ignore[attr-defined]
    store.close()
    saved = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for p in saved:
        p.write_bytes(b"this is not a database" * 300)
    try:
        response = client.get("/get/user")
        assert response.status_code == 503
        assert client.get("/none").status_code == 200
    finally:
        store.close()
        for p, content in saved.items():
            p.write_bytes(content)
    assert client.get("/get/user").text == "'alice'"  # back, without restarting the app


def test_unopenable_path_fails_at_start(tmp_path: Path) -> None:
    app = Flask(__name__)
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(SessionStoreUnavailable, match="unable to open"):
        ServerSession(app, store=f"sqlite:///{tmp_path}/a-directory")
    # A missing directory is a configuration error, named (tests/test_setup_errors.py).
    with pytest.raises(ConfigurationError, match="missing-dir"):
        ServerSession(app, store=f"sqlite:///{tmp_path}/missing-dir/x.db")


def test_url_options(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    store = SQLiteStore.from_url(
        urlsplit(f"sqlite:///{tmp_path}/o.db?table=my_sessions&timeout=2.5&synchronous=full")
    )
    assert store.table == "my_sessions" and store.timeout == 2.5 and store.synchronous == "FULL"
    conn = sqlite3.connect(store.path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "my_sessions" in tables


def test_cleanup_in_batches_while_serving(tmp_path: Path) -> None:
    path = tmp_path / "cleanup.db"
    store = SQLiteStore(path)
    now = time.time()
    expired = 20_000
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO serversession (key, data, created, last_seen, expires, absolute_expires,"
        " user_id, ended, info) VALUES (?, '{}', ?, ?, ?, ?, NULL, 0, NULL)",
        ((f"expired-{i}", now - 100, now - 100, now - 10, now + HOUR) for i in range(expired)),
    )
    conn.execute("COMMIT")
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")

    served: list[int] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            served.append(client.get("/rw/n/1").status_code)

    server = threading.Thread(target=serve)
    server.start()
    try:
        removed = store.clear_expired(time.time(), batch_size=500)
    finally:
        done.set()
        server.join(timeout=30)
    assert removed == expired
    assert served and set(served) == {200}
    assert conn.execute("SELECT count(*) FROM serversession").fetchone()[0] == 1


def test_automatic_cleanup_after_response(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "auto.db")
    now = time.time()
    for _ in range(5):
        store.create(store_key(new_session_id()), _record(now - 100, idle=10))
    app = make_app(store, cleanup_interval=300)
    with app.test_client() as client:
        response = client.get("/set/user/alice")
        response.close()  # a server closes the response after sending it: cleanup runs then
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM serversession").fetchone()[0] == 1
