"""Building the SQL store: on an existing engine or schema, from a URL, from Flask-SQLAlchemy
or the application's own metadata; its options, the MariaDB table's charset, and passwords
never shown.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from sql_servers import MARIADB_PASSWORD, SQLServer
from sql_stores import HOUR, drop_store, fresh_key, fresh_store, fresh_table, make_record, store_url

from flask_serversession import ConfigurationError, SessionStoreUnavailable, store_from_url
from flask_serversession.stores import Patch
from flask_serversession.stores.sql import SQLStore, session_table

# -- ways to build a store ------------------------------------------------------------------------


def _exercise(store: SQLStore) -> None:
    """Every method once."""
    now = time.time()
    key, new = fresh_key(), fresh_key()
    assert store.create(key, make_record(now, {"a": "1"}))
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
    table = fresh_table()
    try:
        store = SQLStore(engine, table=table, schema="serversession_test")
        _exercise(store)
        store.close()
        store.table.drop(engine)
    finally:
        engine.dispose()


def test_store_from_url_registry(sql_server: SQLServer) -> None:
    store = store_from_url(
        store_url(sql_server, table=fresh_table(), pool_size="2", connect_timeout="5")
    )
    assert isinstance(store, SQLStore)
    try:
        _exercise(store)
        assert store.engine.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        drop_store(store)


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


def test_from_flask_sqlalchemy(sql_server: SQLServer) -> None:
    flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")  # in the bench extra
    db = flask_sqlalchemy.SQLAlchemy()
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = sql_server.url
    app.config["SQLALCHEMY_BINDS"] = {"sessions": sql_server.url}
    db.init_app(app)
    table = fresh_table()
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
            bad.load(fresh_key())
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
            pg.load(fresh_key())
        assert secret not in str(info.value)
    finally:
        pg.close()


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql"])
def test_mariadb_table_is_utf8mb4_with_binary_keys(mariadb_server: SQLServer, scheme: str) -> None:
    for store in fresh_store(mariadb_server, scheme):
        _exercise(store)
        with store.engine.connect() as conn:
            ddl = conn.execute(sa.text(f"SHOW CREATE TABLE {store.table.name}")).one()[1]
        assert "ENGINE=InnoDB" in ddl and "CHARSET=utf8mb4 COLLATE=utf8mb4_bin" in ddl
        assert "`key` varchar(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL" in ddl
        now = time.time()
        upper, lower = "A" * 43, "a" * 43  # keys differing only in case are different keys
        assert store.create(upper, make_record(now, {"v": '"upper"'}))
        assert store.create(lower, make_record(now, {"v": '"lower"'}))
        loaded = store.load(upper)
        assert loaded is not None and loaded.values == {"v": '"upper"'}
