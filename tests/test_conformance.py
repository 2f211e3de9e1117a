"""The conformance suite on the embedded stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_serversession.stores import Store
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sqlite import SQLiteStore
from flask_serversession.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        yield MemoryStore()


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = SQLiteStore(tmp_path / "sessions.db")
        yield store
        store.close()
