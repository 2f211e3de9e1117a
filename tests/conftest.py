"""Shared fixtures: a fresh store of each embedded kind, and real servers shared by the run.

Also the rule that makes a PostgreSQL or MariaDB test ``slow`` (see
:func:`pytest_collection_modifyitems`): ``make check`` leaves those to ``make test``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import memcached_stores
import pytest
from memcached_servers import running
from redis_servers import standalone
from servers import ServerProcess
from sql_servers import SQLServer, mariadb, postgresql
from sql_stores import fresh_store
from store_urls import fresh_store_url

from flask_serversession.stores import Store, store_from_url
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sql import SQLStore
from flask_serversession.stores.sqlite import SQLiteStore

#: The stores whose tests are ``slow`` wherever they are: their servers take seconds to start,
#: and each test makes a table of its own. Redis and Memcached start in a fraction of a second.
SLOW_SERVERS = ("postgresql", "mariadb")
SLOW_SERVER_FIXTURES = ("pg_server", "mariadb_server")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test on PostgreSQL or MariaDB: one that asks for their server
    fixture, or one parametrized with either store (its id names it: ``test_x[mariadb]``)."""
    for item in items:
        if _on_a_slow_server(item):
            item.add_marker(pytest.mark.slow)


def _on_a_slow_server(item: pytest.Item) -> bool:
    if any(name in SLOW_SERVER_FIXTURES for name in getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(part in SLOW_SERVERS for part in callspec.id.split("-"))


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each embedded store, fresh and empty."""
    store: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql", "mariadb"])
def listing_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind that can list sessions (``capabilities.scan``: all but
    Memcached); an SQL store's table is dropped afterwards."""
    store = store_from_url(fresh_store_url(request, request.param, tmp_path))
    assert store.capabilities.scan
    yield store
    if isinstance(store, SQLStore):
        store.table.drop(store.engine, checkfirst=True)
    store.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One standalone redis-server for the whole run (tests use distinct key prefixes)."""
    with standalone(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One memcached for the whole run (tests use distinct key prefixes)."""
    with running(tmp_path_factory.mktemp("memcached")) as (server,):
        yield server


@pytest.fixture
def close_memcached_stores() -> Iterator[None]:
    """Close every store the test opened through ``memcached_stores``, even when it fails."""
    yield
    memcached_stores.close_opened()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[SQLServer]:
    """One PostgreSQL for the whole run (tests use distinct tables)."""
    with postgresql() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[SQLServer]:
    """One MariaDB for the whole run (tests use distinct tables)."""
    with mariadb() as server:
        yield server


@pytest.fixture(params=SLOW_SERVER_FIXTURES, ids=SLOW_SERVERS)
def sql_server(request: pytest.FixtureRequest) -> SQLServer:
    """PostgreSQL and MariaDB in turn."""
    found: SQLServer = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def sql_store(sql_server: SQLServer) -> Iterator[SQLStore]:
    """A fresh store on each SQL server, its table dropped afterwards."""
    yield from fresh_store(sql_server)
