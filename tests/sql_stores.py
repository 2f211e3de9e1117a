"""SQL stores for the tests, on the servers of sql_servers: a table of their own per test,
dropped afterwards, and the small things the SQL tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask.testing import FlaskClient
from sql_servers import SQLServer

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Record
from flask_serversession.stores.sql import SQLStore

HOUR = 3600.0


def fresh_table() -> str:
    """A fresh table name: an empty store per test on a shared server."""
    return f"t_{uuid.uuid4().hex[:16]}"


def store_url(server: SQLServer, **options: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{server.url}?{query}" if query else server.url


def drop_store(store: SQLStore) -> None:
    try:
        store.table.drop(store.engine, checkfirst=True)
    finally:
        store.close()


def fresh_store(server: SQLServer, scheme: str | None = None) -> Iterator[SQLStore]:
    """A store with a table of its own, dropped afterwards; ``scheme`` replaces the URL's."""
    url = store_url(server, table=fresh_table())
    if scheme is not None:
        url = scheme + url[url.index(":") :]
    store = SQLStore.from_url(url)
    yield store
    drop_store(store)


def fresh_key() -> str:
    return store_key(new_session_id())


def make_record(now: float, values: dict[str, str] | None = None, idle: float = HOUR) -> Record:
    return Record({} if values is None else values, now, now, now + idle, now + 24 * HOUR)


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def is_postgresql(store: SQLStore) -> bool:
    return store.engine.dialect.name == "postgresql"


@contextmanager
def role_that_may_not_alter(server: SQLServer, table: str) -> Iterator[str]:
    """The URL of a PostgreSQL login that may read and write ``table`` but not alter it (its
    owner is ``postgres``); the role is dropped afterwards, the table is left."""
    role = f"r_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
            conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}"))
        yield f"{server.url.replace('postgres@', f'{role}@')}?table={table}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()
