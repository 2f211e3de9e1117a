"""Statements the PostgreSQL server runs for each store call, counted by the server itself
(pg_stat_statements, which counts ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` too): one each, on the
store's own engine and on a borrowed one, with reads through the driver's cursor
(:mod:`flask_serversession.stores.sql.direct`), which SQLAlchemy's events do not see. (A pool
pre-ping is an empty query on psycopg, which it does not list: test_sql.py counts checkouts.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa
from sql_servers import SQLServer, postgresql

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record, Touch
from flask_serversession.stores.sql import SQLStore
from flask_serversession.stores.sql.direct import _CURSOR as direct_cursor_key

HOUR = 3600.0

#: A PostgreSQL server of its own (with pg_stat_statements): seconds to start, so not in
#: `make check`'s fast lane, like every other PostgreSQL test.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def counted_pg() -> Iterator[SQLServer]:
    settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track_utility": "on",
    }
    with postgresql(settings) as server:
        with _admin(server) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        yield server


def _admin(server: SQLServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user="postgres",
        dbname="serversession_test",
        autocommit=True,
    )


class ServerCount:
    """What the server ran since :meth:`reset`, per statement, left out this class' own."""

    def __init__(self, server: SQLServer) -> None:
        self.conn = _admin(server)

    def reset(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def ran(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT query, calls FROM pg_stat_statements").fetchall()
        return {
            " ".join(str(query).split())[:50]: int(str(calls))
            for query, calls in rows
            if "pg_stat_statements" not in str(query)
        }


@pytest.fixture(params=["own engine", "borrowed engine"])
def store(request: pytest.FixtureRequest, counted_pg: SQLServer) -> Iterator[SQLStore]:
    table = f"t_{uuid.uuid4().hex[:16]}"
    if request.param == "own engine":
        store = SQLStore.from_url(f"{counted_pg.url}?table={table}")
        engine = store.engine
    else:
        engine = sa.create_engine(counted_pg.url)
        store = SQLStore(engine, table=table)
    store.create_schema()
    yield store
    store.table.drop(engine, checkfirst=True)
    store.close()
    engine.dispose()


def test_each_store_call_is_one_statement_on_the_server_but_a_due_touch(
    store: SQLStore, counted_pg: SQLServer
) -> None:
    count = ServerCount(counted_pg)
    now = time.time()
    key = store_key(new_session_id())
    calls: dict[str, Callable[[], object]] = {
        "create": lambda: store.create(
            key, Record({"a": '"x"'}, now, now, now + HOUR, now + 9 * HOUR)
        ),
        "load": lambda: store.load(key),
        "load, touch not due": lambda: store.load(key, Touch(now + 1, now + HOUR, now - 60)),
        "load, touch due": lambda: store.load(key, Touch(now + 120, now + HOUR, now + 60)),
        "patch": lambda: store.patch(key, Patch({"b": "1"}, (), now + 130, now + HOUR)),
    }
    # A due touch (once per touch interval per session) is an UPDATE after the plain SELECT.
    statements = {label: 2 if label == "load, touch due" else 1 for label in calls}
    for _ in range(2):  # the second time: connections made, statements prepared
        store.delete(key)
        for label, call in calls.items():
            count.reset()
            call()
            ran = count.ran()
            assert sum(ran.values()) == statements[label], (label, ran)
    # The read went through the driver's cursor.
    assert [sql is not None for _, sql in store._direct._sql.values()] == [True]
    record = store.load(key)
    assert record is not None
    assert record.values == {"a": '"x"', "b": "1"}
    assert record.last_seen == pytest.approx(now + 130)
    count.conn.close()


def test_reads_keep_one_cursor_per_connection_and_a_new_one_after_a_drop(
    store: SQLStore, counted_pg: SQLServer
) -> None:
    now = time.time()
    key = store_key(new_session_id())
    store.create(key, Record({"a": '"x"'}, now, now, now + HOUR, now + 9 * HOUR))

    def cursor_now() -> object:
        with store.engine.connect() as conn:  # the pool's one connection: reads are sequential
            return conn.connection.info.get(direct_cursor_key)

    first = [store.load(key), store.load(key)]
    kept = cursor_now()
    assert kept is not None
    store.load(key)
    assert cursor_now() is kept
    # The server ends every other connection (a restart, a failover): the next read still reads.
    with _admin(counted_pg) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    after = store.load(key)  # the kept cursor fails: read again the usual way
    assert after is not None and first[0] is not None
    assert after.values == first[0].values == {"a": '"x"'}
    assert store.load(key) is not None  # and the direct way, on the new connection
    renewed = cursor_now()
    assert renewed is not None and renewed is not kept


def test_a_pool_that_shares_one_connection_across_threads_keeps_no_cursor(
    counted_pg: SQLServer,
) -> None:
    # StaticPool hands the same connection to every thread at once: a kept cursor could be
    # executed by one thread and read by another, giving a request someone else's session.
    engine = sa.create_engine(
        counted_pg.url, poolclass=sa.pool.StaticPool, isolation_level="AUTOCOMMIT"
    )
    store = SQLStore(engine, table=f"t_{uuid.uuid4().hex[:16]}")
    store.create_schema()
    now = time.time()
    key = store_key(new_session_id())
    try:
        store.create(key, Record({"n": "1"}, now, now, now + HOUR, now + 9 * HOUR))
        for _ in range(3):
            record = store.load(key)
            assert record is not None and record.values == {"n": "1"}
        assert store._direct._sql, "the reads went through the driver's cursor"
        with engine.connect() as conn:
            assert direct_cursor_key not in conn.connection.info
    finally:
        store.table.drop(engine, checkfirst=True)
        engine.dispose()
