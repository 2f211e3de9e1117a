"""The SQL store against real PostgreSQL 15 and MariaDB servers, started by the tests.

Besides the conformance suite on both: statements per request (counted with SQLAlchemy
events), a database restart mid-run, 8 threads on one session, cleanup of 100,000 expired rows
while requests are served, concurrent schema creation, the ways to build a store, and secrets.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sql_servers import MARIADB_PASSWORD, SQLServer

from flask_serversession import (
    ConfigurationError,
    SessionDataCorrupt,
    SessionDataError,
    SessionStoreUnavailable,
    store_from_url,
)
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Patch, Record, Store
from flask_serversession.stores.sql import SQLStore, session_table
from flask_serversession.testing import Clock, StoreConformance, make_app

HOUR = 3600.0
SERVERS = ["pg_server", "mariadb_server"]


@pytest.fixture(params=SERVERS, ids=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> SQLServer:
    """Each server in turn."""
    found: SQLServer = request.getfixturevalue(request.param)
    return found


def _table() -> str:
    """A fresh table name: an empty store per test on a shared server."""
    return f"t_{uuid.uuid4().hex[:16]}"


def _url(server: SQLServer, **options: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{server.url}?{query}" if query else server.url


def _drop(store: SQLStore) -> None:
    try:
        store.table.drop(store.engine, checkfirst=True)
    finally:
        store.close()


def _fresh_store(server: SQLServer, scheme: str | None = None) -> Iterator[SQLStore]:
    """A store with a table of its own, dropped afterwards; ``scheme`` replaces the URL's."""
    url = _url(server, table=_table())
    if scheme is not None:
        url = scheme + url[url.index(":") :]
    store = SQLStore.from_url(url)
    yield store
    _drop(store)


@pytest.fixture
def sql_store(server: SQLServer) -> Iterator[SQLStore]:
    """A fresh store on each server."""
    yield from _fresh_store(server)


class TestPostgreSQLStore(StoreConformance):
    @pytest.fixture
    def store(self, pg_server: SQLServer) -> Iterator[Store]:
        yield from _fresh_store(pg_server)


class TestMariaDBStore(StoreConformance):
    """On SQLAlchemy's mariadb dialect; the other MariaDB tests use mysql+pymysql://."""

    @pytest.fixture
    def store(self, mariadb_server: SQLServer) -> Iterator[Store]:
        yield from _fresh_store(mariadb_server, "mariadb+pymysql")


# -- helpers ------------------------------------------------------------------------------------


def _key() -> str:
    return store_key(new_session_id())


def _record(now: float, values: dict[str, str] | None = None, idle: float = HOUR) -> Record:
    return Record({} if values is None else values, now, now, now + idle, now + 24 * HOUR)


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def _is_pg(store: SQLStore) -> bool:
    return store.engine.dialect.name == "postgresql"


class Statements:
    """Counts the statements an engine sends (``before_cursor_execute``) and its pool
    checkouts (each one pre-ping round trip)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self.checkouts = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "checkout", self._checkout)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(" ".join(statement.split())[:60])

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1

    def reset(self) -> None:
        self.statements.clear()
        self.checkouts = 0


# -- statements per request ---------------------------------------------------------------------


def test_statements_per_request(sql_store: SQLStore) -> None:
    """Untouched 0, read-only 1, assign-only 1, read+write 2; the touch, when due (once per
    touch interval), is one more statement after the read."""
    sql_store.create_schema()
    counter = Statements(sql_store.engine)
    app = make_app(sql_store)
    clock = Clock(time.time())
    _interface(app).clock = clock
    client = app.test_client()
    assert client.get("/set/user/alice").status_code == 200
    touch = 2  # a due touch: the statements of a read
    budget = [
        ("untouched", "/none", 0, 0),
        ("read-only", "/get/user", 10, 1),
        ("assign-only", "/set/x/1", 10, 1),
        ("read+write", "/rw/y/2", 10, 2),
        ("read-only, touch due", "/get/user", 120, touch),
        ("read+write, touch due", "/rw/z/3", 120, touch + 1),
        ("assign-only, touch due", "/set/x/2", 120, 1),
    ]
    report = []
    for label, path, advance, expected in budget:
        clock.advance(advance)
        counter.reset()
        response = client.get(path)
        assert response.status_code == 200
        assert len(counter.statements) == expected, (label, counter.statements)
        report.append(f"{label}: {len(counter.statements)} ({counter.checkouts} checkouts)")
    print(f"\n{sql_store.engine.dialect.name}: " + "; ".join(report))
    assert client.get("/dump").json == {"user": "'alice'", "x": "'2'", "y": "'2'", "z": "'3'"}


# -- outages --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pre_ping", ["true", "false"])
def test_database_restart_mid_run(server: SQLServer, pre_ping: str) -> None:
    """503 while the database is down (pages without session still 200); back after the
    restart, without restarting the app."""
    store = SQLStore.from_url(_url(server, table=_table(), pool_pre_ping=pre_ping))
    app = make_app(store)
    app.testing = False  # as in production: errors become responses
    client = app.test_client()
    try:
        assert client.get("/set/user/alice").status_code == 200
        assert client.get("/get/user").text == "'alice'"  # the pool holds a connection now
        server.stop()
        try:
            for path in ("/get/user", "/set/user/bob", "/rw/user/bob"):
                response = client.get(path)
                assert response.status_code == 503, path
                assert response.headers["Retry-After"] == "1"
                assert "127.0.0.1" not in response.text  # details go to the log only
            assert client.get("/none").status_code == 200
            with pytest.raises(SessionStoreUnavailable) as info:
                store.load(_key())
            assert MARIADB_PASSWORD not in str(info.value)
        finally:
            server.start()
        assert client.get("/get/user").text == "'alice'"
        assert client.get("/rw/user/carol").text == "'alice'"
        # A restart between two requests: the pooled connections are stale, yet no request
        # fails (a pre-ping finds them dead, or a statement does and is retried once).
        server.stop()
        server.start()
        assert client.get("/get/user").text == "'carol'"
        assert client.get("/set/user/dave").status_code == 200
        assert client.get("/get/user").text == "'dave'"
    finally:
        _drop(store)


# -- concurrency ----------------------------------------------------------------------------------


def test_eight_threads_hammer_one_session(sql_store: SQLStore) -> None:
    """Eight clients with the same cookie assign (and read-then-assign) different keys at once:
    every write lands."""
    app = make_app(sql_store)
    client = app.test_client()
    client.get("/set/user/alice")
    cookie = _cookie(client)
    threads, per_thread = 8, 15
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            other = app.test_client()
            other.set_cookie("session", cookie)
            barrier.wait(timeout=10)
            for i in range(per_thread):
                path = f"/set/t{n}-{i}/{i}" if i % 2 else f"/rw/t{n}-{i}/{i}"
                statuses.append(other.get(path).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors
    assert statuses == [200] * threads * per_thread
    values = client.get("/dump").json
    assert values is not None and len(values) == 1 + threads * per_thread
    assert values["t7-14"] == "'14'"


# -- cleanup --------------------------------------------------------------------------------------


def _insert_expired(store: SQLStore, count: int, now: float) -> None:
    """``count`` expired rows in one server-side INSERT ... SELECT."""
    table = store.engine.dialect.identifier_preparer.format_table(store.table)
    columns = (
        "(`key`, data, created, last_seen, expires, absolute_expires, user_id, ended, version)"
    )
    if _is_pg(store):
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
    live = [_key() for _ in range(20)]
    for key in live:
        assert sql_store.create(key, _record(now, {"n": "1"}))
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
            assert store.create(_key(), _record(time.time()))
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
def test_schema_creation_race(server: SQLServer) -> None:
    """Several processes, several threads each, create the same table at the same moment."""
    table = _table()
    url = _url(server, table=table)
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
        _drop(store)


def test_two_apps_in_one_process_share_the_table(server: SQLServer) -> None:
    url = _url(server, table=_table())
    first, second = SQLStore.from_url(url), SQLStore.from_url(url)
    try:
        app1, app2 = make_app(first), make_app(second)
        client1 = app1.test_client()
        client1.get("/set/user/alice")
        client2 = app2.test_client()  # same secret key: the same cookie works on both
        client2.set_cookie("session", _cookie(client1))
        assert client2.get("/rw/user/bob").text == "'alice'"
        assert client1.get("/get/user").text == "'bob'"
    finally:
        second.close()
        _drop(first)


# -- ways to build a store ------------------------------------------------------------------------


def _exercise(store: SQLStore) -> None:
    """Every method once."""
    now = time.time()
    key, new = _key(), _key()
    assert store.create(key, _record(now, {"a": "1"}))
    user = "użytkownik 🐢 ß"
    assert store.patch(key, Patch({"b": "2"}, ["a"], now, now + HOUR, user_id=user))
    assert store.patch(key, Patch({}, (), now, now + HOUR, new_key=new, tombstone_until=now + 60))
    loaded = store.load(new)
    assert loaded is not None and loaded.values == {"b": "2"} and loaded.user_id == user
    old = store.load(key)
    assert old is not None and old.ended
    store.delete(new)
    assert store.load(new) is None
    assert store.clear_expired(now + 61) == 1


def test_store_on_an_existing_engine_with_a_schema(pg_server: SQLServer) -> None:
    engine = sa.create_engine(pg_server.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS web"))
        store = SQLStore(engine, table="sessions", schema="web")
        assert store.name.endswith("?schema=web&table=sessions")
        _exercise(store)
        assert sa.inspect(engine).has_table("sessions", schema="web")
        store.close()  # a borrowed engine stays open
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM web.sessions")).scalar() == 0
        store.table.drop(engine)
    finally:
        engine.dispose()


def test_store_on_an_existing_mariadb_engine(mariadb_server: SQLServer) -> None:
    engine = sa.create_engine(mariadb_server.url)
    table = _table()
    try:
        store = SQLStore(engine, table=table, schema="serversession_test")
        _exercise(store)
        store.close()
        store.table.drop(engine)
    finally:
        engine.dispose()


def test_store_from_url_registry(server: SQLServer) -> None:
    store = store_from_url(_url(server, table=_table(), pool_size="2", connect_timeout="5"))
    assert isinstance(store, SQLStore)
    try:
        _exercise(store)
        assert store.engine.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        _drop(store)


def test_metadata_for_alembic() -> None:
    """The table can live in the application's own metadata; the store reuses it."""
    metadata = sa.MetaData()
    table = session_table(metadata, "app_sessions", schema="web")
    assert metadata.tables["web.app_sessions"] is table
    assert session_table(metadata, "app_sessions", schema="web") is table
    assert {index.name for index in table.indexes} == {
        "ix_app_sessions_expires",
        "ix_app_sessions_user_id",
    }
    engine = sa.create_engine("postgresql+psycopg://u@127.0.0.1:1/db")
    store = SQLStore(engine, table="app_sessions", schema="web", metadata=metadata)
    assert store.table is table and store.metadata is metadata
    ddl = str(sa.schema.CreateTable(table).compile(engine))
    assert "data JSONB NOT NULL" in ddl and "expires DOUBLE PRECISION NOT NULL" in ddl
    engine.dispose()


def test_from_flask_sqlalchemy(server: SQLServer) -> None:
    flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")  # in the bench extra
    db = flask_sqlalchemy.SQLAlchemy()
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = server.url
    app.config["SQLALCHEMY_BINDS"] = {"sessions": server.url}
    db.init_app(app)
    table = _table()
    with pytest.raises(ConfigurationError, match="app_context"):
        SQLStore.from_flask_sqlalchemy(db)
    store = SQLStore.from_flask_sqlalchemy(db, app=app, table=table)
    other = SQLStore.from_flask_sqlalchemy(db, "sessions", app=app, table=table)
    try:
        assert db.metadata.tables[table] is store.table  # Flask-Migrate sees it
        with app.app_context():
            assert store.engine is db.engine
            assert other.engine is db.engines["sessions"]
            db.create_all()
        assert sa.inspect(store.engine).has_table(table)
        _exercise(store)
        _exercise(other)
    finally:
        store.table.drop(store.engine, checkfirst=True)
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


# -- configuration and secrets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tabel=x", "unknown SQL store option 'tabel'"),
        ("table=x;drop", "invalid SQL table name"),
        ("schema=a.b", "invalid SQL schema name"),
        ("pool_size=many", "pool_size must be a number"),
        ("create_table=maybe", "create_table must be true or false"),
        ("table=a&table=b", "given twice"),
    ],
)
@pytest.mark.parametrize(
    "base",
    ["postgresql+psycopg://u:pw@127.0.0.1:1/db", "mysql+pymysql://u:pw@127.0.0.1:1/db"],
)
def test_bad_options_are_configuration_errors(base: str, query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        store_from_url(f"{base}?{query}")


def test_driver_options_pass_through() -> None:
    pg = SQLStore.from_url(
        "postgresql+psycopg://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=3"
    )
    my = SQLStore.from_url(urlsplit("mariadb+pymysql://u@127.0.0.1:1/db?connect_timeout=3"))
    try:
        assert "sslmode" not in pg.name and pg.name.endswith("/db?table=serversession")
        assert pg.engine.url.query == {"sslmode": "disable", "connect_timeout": "3"}
        assert my.engine.url.query["charset"] == "utf8mb4"
    finally:
        pg.close()
        my.close()
    with pytest.raises(ConfigurationError, match="supports PostgreSQL and MySQL"):
        SQLStore(sa.create_engine("sqlite://"))
    with pytest.raises(ConfigurationError):
        store_from_url("postgresql+nosuchdriver://u@127.0.0.1/db")


def test_password_never_shown(mariadb_server: SQLServer, pg_server: SQLServer) -> None:
    store = SQLStore.from_url(mariadb_server.url)
    assert MARIADB_PASSWORD not in store.name and MARIADB_PASSWORD not in repr(store)
    assert ":***@" in store.name
    store.close()
    wrong = "Wr0ng-pa55word-for-test"
    bad = SQLStore.from_url(mariadb_server.url.replace(MARIADB_PASSWORD, wrong))
    try:
        with pytest.raises(SessionStoreUnavailable) as info:
            bad.load(_key())
        assert "Access denied" in str(info.value)
        assert wrong not in str(info.value) and wrong not in info.value.reason
    finally:
        bad.close()
    secret = "pg-Secret-pw"
    url = pg_server.url.replace("postgres@", f"postgres:{secret}@")
    pg = SQLStore.from_url(url.replace(f":{pg_server.port}/", ":1/"))  # nothing listens on 1
    try:
        assert secret not in pg.name
        with pytest.raises(SessionStoreUnavailable) as info:
            pg.load(_key())
        assert secret not in str(info.value)
    finally:
        pg.close()


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql"])
def test_mariadb_table_is_utf8mb4_with_binary_keys(mariadb_server: SQLServer, scheme: str) -> None:
    for store in _fresh_store(mariadb_server, scheme):
        _exercise(store)
        with store.engine.connect() as conn:
            ddl = conn.execute(sa.text(f"SHOW CREATE TABLE {store.table.name}")).one()[1]
        assert "ENGINE=InnoDB" in ddl and "CHARSET=utf8mb4 COLLATE=utf8mb4_bin" in ddl
        assert "`key` varchar(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL" in ddl
        now = time.time()
        upper, lower = "A" * 43, "a" * 43  # keys differing only in case are different keys
        assert store.create(upper, _record(now, {"v": '"upper"'}))
        assert store.create(lower, _record(now, {"v": '"lower"'}))
        loaded = store.load(upper)
        assert loaded is not None and loaded.values == {"v": '"upper"'}


# -- data -----------------------------------------------------------------------------------------


def test_patch_keeps_text_exactly(sql_store: SQLStore) -> None:
    now = time.time()
    key = _key()
    assert sql_store.create(key, _record(now, {"a": "1", "gone": "2"}))
    values = {
        "quotes": dumps_value("q", 'say "hi" \\ and \n newline'),
        "null": "null",
        "unicode": dumps_value("u", "żółw 🐢 \u2028"),
        "weird name \" ' . $ {} \\ ż": "1",
        "$.path[0]": '"x"',
        "big": dumps_value("big", "y" * 100_000),
    }
    assert sql_store.patch(key, Patch(values, ["gone", "never"], now, now + HOUR))
    loaded = sql_store.load(key)
    assert loaded is not None and loaded.values == {"a": "1", **values}
    assert sql_store.patch(key, Patch({"null": '"now a string"'}, ["null"], now, now + HOUR))
    loaded = sql_store.load(key)
    assert loaded is not None and loaded.values["null"] == '"now a string"'  # set wins


def test_postgresql_names_the_key_it_cannot_store(pg_server: SQLServer) -> None:
    for store in _fresh_store(pg_server):
        now = time.time()
        key = _key()
        for name in ("nul\x00", "lone \ud800 surrogate"):
            with pytest.raises(SessionDataError, match="cannot store this key name"):
                store.create(key, _record(now, {name: "1"}))
        assert store.create(key, _record(now, {"a": "1"}))
        with pytest.raises(SessionDataError) as info:
            store.patch(key, Patch({"ok": "1", "bad\x00": "2"}, (), now, now + HOUR))
        assert info.value.key == "bad\x00"
        assert store.patch(key, Patch({"b": "2"}, ["a", "nul\x00", "\udc00"], now, now + HOUR))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"b": "2"}


def test_corrupt_data_is_reported(sql_store: SQLStore) -> None:
    now = time.time()
    key, other = _key(), _key()
    sql_store.create(key, _record(now, {"a": "1"}))
    sql_store.create(other, _record(now, {"a": "1"}))
    bad = "'{\"a\": 1}'" + ("::jsonb" if _is_pg(sql_store) else "")
    table = sql_store.engine.dialect.identifier_preparer.format_table(sql_store.table)
    key_column = '"key"' if _is_pg(sql_store) else "`key`"
    with sql_store.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET data = {bad} WHERE {key_column} = :k"), {"k": key}
        )
        if not _is_pg(sql_store):
            conn.execute(
                sa.text(f"UPDATE {table} SET data = 'not json' WHERE {key_column} = :k"),
                {"k": other},
            )
    with pytest.raises(SessionDataCorrupt):
        sql_store.load(key)
    if not _is_pg(sql_store):
        with pytest.raises(SessionDataCorrupt):
            sql_store.load(other)


def _inject_deadlocks(store: SQLStore) -> sa.TextClause:
    """A trigger that fails UPDATEs with a deadlock error while a counter is under a limit;
    returns the statement that sets the limit (``:n`` more failures)."""
    t = store.table.name
    statements: list[str]
    if _is_pg(store):
        statements = [
            f"CREATE SEQUENCE {t}_fails",
            f"CREATE TABLE {t}_limit (n integer)",
            f"INSERT INTO {t}_limit VALUES (0)",
            f"CREATE FUNCTION {t}_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF nextval('{t}_fails') <= (SELECT n FROM {t}_limit) THEN"
            f" RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF;"
            f" RETURN NEW; END $$",
            f"CREATE TRIGGER {t}_fail BEFORE UPDATE ON {t} FOR EACH ROW"
            f" EXECUTE FUNCTION {t}_fail()",
        ]
        more = f"UPDATE {t}_limit SET n = nextval('{t}_fails') + :n"
    else:
        statements = [
            f"CREATE SEQUENCE {t}_fails",
            f"CREATE TABLE {t}_limit (n integer)",
            f"INSERT INTO {t}_limit VALUES (0)",
            f"CREATE TRIGGER {t}_fail BEFORE UPDATE ON {t} FOR EACH ROW BEGIN"
            f" IF NEXTVAL({t}_fails) <= (SELECT n FROM {t}_limit) THEN"
            f" SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213,"
            f" MESSAGE_TEXT = 'injected deadlock'; END IF; END",
        ]
        more = f"UPDATE {t}_limit SET n = NEXTVAL({t}_fails) + :n"
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    return sa.text(more)


def test_deadlocks_are_retried_then_reported(sql_store: SQLStore) -> None:
    sql_store.create_schema()
    now = time.time()
    key = _key()
    sql_store.create(key, _record(now, {"a": "1"}))
    more_failures = _inject_deadlocks(sql_store)
    t = sql_store.table.name
    try:
        with sql_store.engine.begin() as conn:
            conn.execute(more_failures, {"n": 2})
        assert sql_store.patch(key, Patch({"b": "2"}, (), now, now + HOUR))  # third attempt
        with sql_store.engine.begin() as conn:
            conn.execute(more_failures, {"n": 3})
        with pytest.raises(SessionStoreUnavailable, match="injected deadlock"):
            sql_store.patch(key, Patch({"c": "3"}, (), now, now + HOUR))
        loaded = sql_store.load(key)
        assert loaded is not None and loaded.values == {"a": "1", "b": "2"}
    finally:
        with sql_store.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {t}_limit"))
            conn.execute(sa.text(f"DROP SEQUENCE {t}_fails"))
