"""The SQL store in operation, on PostgreSQL and MariaDB: a database restart mid-run, cleanup
of 100,000 expired rows while requests are served, concurrent schema creation, and two apps
sharing one table.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sql_servers import MARIADB_PASSWORD, SQLServer
from sql_stores import (
    HOUR,
    drop_store,
    fresh_key,
    fresh_table,
    is_postgresql,
    make_record,
    session_cookie,
    store_url,
)

from flask_serversession import SessionStoreUnavailable
from flask_serversession.stores.sql import SQLStore
from flask_serversession.testing import make_app

# -- outages --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pre_ping", ["true", "false"])
def test_database_restart_mid_run(sql_server: SQLServer, pre_ping: str) -> None:
    """503 while the database is down (pages without session still 200); back after the
    restart, without restarting the app."""
    store = SQLStore.from_url(store_url(sql_server, table=fresh_table(), pool_pre_ping=pre_ping))
    app = make_app(store)
    app.testing = False  # as in production: errors become responses
    client = app.test_client()
    try:
        assert client.get("/set/user/alice").status_code == 200
        assert client.get("/get/user").text == "'alice'"  # the pool holds a connection now
        sql_server.stop()
        try:
            for path in ("/get/user", "/set/user/bob", "/rw/user/bob"):
                response = client.get(path)
                assert response.status_code == 503, path
                assert response.headers["Retry-After"] == "1"
                assert "127.0.0.1" not in response.text  # details go to the log only
            assert client.get("/none").status_code == 200
            with pytest.raises(SessionStoreUnavailable) as info:
                store.load(fresh_key())
            assert MARIADB_PASSWORD not in str(info.value)
        finally:
            sql_server.start()
        assert client.get("/get/user").text == "'alice'"
        assert client.get("/rw/user/carol").text == "'alice'"
        # A restart between two requests: the pooled connections are stale, yet no request
        # fails (a pre-ping finds them dead, or a statement does and is retried once).
        sql_server.stop()
        sql_server.start()
        assert client.get("/get/user").text == "'carol'"
        assert client.get("/set/user/dave").status_code == 200
        assert client.get("/get/user").text == "'dave'"
    finally:
        drop_store(store)


# -- cleanup --------------------------------------------------------------------------------------


def _insert_expired(store: SQLStore, count: int, now: float) -> None:
    """``count`` expired rows in one server-side INSERT ... SELECT."""
    table = store.engine.dialect.identifier_preparer.format_table(store.table)
    columns = (
        "(`key`, data, created, last_seen, expires, absolute_expires, user_id, ended, version)"
    )
    if is_postgresql(store):
        sql = (
            f"INSERT INTO {table} {columns.replace('`', '')}"
            " SELECT 'expired-' || g, '{}'::jsonb, :old, :old, :old + g / 1000.0, :abs, NULL,"
            " false, 1 FROM generate_series(1, :n) AS g"
        )
    else:
        sql = (
            f"INSERT INTO {table} {columns}"
            " SELECT CONCAT('expired-', seq), '{}', :old, :old, :old + seq / 1000.0, :abs, NULL,"
            f" 0, 1 FROM seq_1_to_{count}"
        )
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), {"old": now - 2 * HOUR, "abs": now + HOUR, "n": count})


def _count(store: SQLStore) -> int:
    with store.engine.connect() as conn:
        count: int = conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar_one()
    return count


@pytest.mark.slow
def test_cleanup_of_100k_expired_rows_while_serving(sql_store: SQLStore) -> None:
    sql_store.create_schema()
    now = time.time()
    expired = 100_000
    started = time.perf_counter()
    _insert_expired(sql_store, expired, now)
    inserted_in = time.perf_counter() - started
    live = [fresh_key() for _ in range(20)]
    for key in live:
        assert sql_store.create(key, make_record(now, {"n": "1"}))
    app = make_app(sql_store)
    client = app.test_client()
    client.get("/set/user/alice")

    served: list[tuple[int, float]] = []
    done = threading.Event()

    def serve() -> None:
        i = 0
        while not done.is_set():
            i += 1
            began = time.perf_counter()
            status = client.get(f"/rw/n/{i}").status_code
            served.append((status, time.perf_counter() - began))

    server = threading.Thread(target=serve)
    server.start()
    try:
        started = time.perf_counter()
        removed = sql_store.clear_expired(time.time(), batch_size=1000)
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        server.join(timeout=30)
    assert removed == expired
    assert served and {status for status, _ in served} == {200}
    assert _count(sql_store) == len(live) + 1
    for key in live:
        assert sql_store.load(key) is not None
    slowest = max(seconds for _, seconds in served)
    print(
        f"\n{sql_store.engine.dialect.name}: inserted {expired:,} expired rows in"
        f" {inserted_in:.2f} s; clear_expired removed them in {elapsed:.2f} s (batches of"
        f" 1,000) while {len(served)} requests were served, all 200, slowest"
        f" {slowest * 1000:.1f} ms"
    )


# -- schema creation ------------------------------------------------------------------------------


def _create_schema_in_threads(url: str, threads: int, barrier: Any) -> None:
    """In a worker process: ``threads`` stores created at once, each making one session."""
    errors: list[BaseException] = []

    def create() -> None:
        store = SQLStore.from_url(url)
        try:
            barrier.wait(timeout=60)
            store.create_schema()
            assert store.create(fresh_key(), make_record(time.time()))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    workers = [threading.Thread(target=create) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    if errors:
        raise errors[0]


@pytest.mark.slow
def test_schema_creation_race(sql_server: SQLServer) -> None:
    """Several processes, several threads each, create the same table at the same moment."""
    table = fresh_table()
    url = store_url(sql_server, table=table)
    processes, threads = 3, 3
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes * threads + threads)
    workers = [
        context.Process(target=_create_schema_in_threads, args=(url, threads, barrier))
        for _ in range(processes)
    ]
    store = SQLStore.from_url(url)  # makes no table until used
    try:
        for worker in workers:
            worker.start()
        _create_schema_in_threads(url, threads, barrier)
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
        assert _count(store) == processes * threads + threads
        indexes = {index["name"] for index in sa.inspect(store.engine).get_indexes(table)}
        assert indexes == {f"ix_{table}_expires", f"ix_{table}_user_id"}
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        drop_store(store)


def test_two_apps_in_one_process_share_the_table(sql_server: SQLServer) -> None:
    url = store_url(sql_server, table=fresh_table())
    first, second = SQLStore.from_url(url), SQLStore.from_url(url)
    try:
        app1, app2 = make_app(first), make_app(second)
        client1 = app1.test_client()
        client1.get("/set/user/alice")
        client2 = app2.test_client()  # same secret key: the same cookie works on both
        client2.set_cookie("session", session_cookie(client1))
        assert client2.get("/rw/user/bob").text == "'alice'"
        assert client1.get("/get/user").text == "'bob'"
    finally:
        second.close()
        drop_store(first)
