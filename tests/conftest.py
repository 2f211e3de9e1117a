"""Shared fixtures: a fresh store of each embedded kind, and real servers shared by the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from memcached_servers import running
from redis_servers import standalone
from servers import ServerProcess
from sql_servers import SQLServer, mariadb, postgresql

from flask_serversession.stores import Store
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each embedded store, fresh and empty."""
    store: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield store
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
