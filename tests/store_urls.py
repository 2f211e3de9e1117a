"""A fresh, empty store of any kind, for tests: one helper instead of one per test file.

Servers are shared by the run (tests/conftest.py); freshness comes from a new key prefix
(Redis, Memcached), a new table (PostgreSQL, MariaDB) or a new file (SQLite).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from servers import ServerProcess
from sql_servers import SQLServer

#: Every kind of store, in the order tests list them.
STORE_KINDS = ["memory", "sqlite", "redis", "memcached", "postgresql", "mariadb"]


def fresh_store_url(request: pytest.FixtureRequest, kind: str, directory: Path) -> str:
    """The URL of an empty store of ``kind``; SQLite's file goes in ``directory``."""
    fresh = f"t{uuid.uuid4().hex[:12]}"
    if kind in ("redis", "memcached"):
        server: ServerProcess = request.getfixturevalue(f"{kind}_server")
        return f"{kind}://127.0.0.1:{server.port}?prefix={fresh}:"
    if kind in ("postgresql", "mariadb"):
        fixture = "pg_server" if kind == "postgresql" else "mariadb_server"
        sql: SQLServer = request.getfixturevalue(fixture)
        return f"{sql.url}?table={fresh}"
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / 'sessions.db'}"
    assert kind == "memory", kind
    return "memory://"
