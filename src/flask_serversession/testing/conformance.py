"""StoreConformance: the store contract and the app behaviour, with the fixtures they share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ..stores import Store
from .app import TRANSPORTS, _interface, make_app
from .behaviour import AppBehaviour
from .contract import StoreContract
from .doubles import HOUR, Clock, CountingStore
from .limits import AppLimits
from .user_index import UserIndexContract
from .users import AppUsers


class StoreConformance(StoreContract, UserIndexContract, AppBehaviour, AppLimits, AppUsers):
    """Every behaviour a store must have. Subclass it and provide a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError("subclasses provide a fresh, empty store")

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def counting(self, store: Store) -> CountingStore:
        return CountingStore(store)

    @pytest.fixture(params=TRANSPORTS)
    def transport(self, request: pytest.FixtureRequest) -> str:
        """How the session travels: each ``test_app_*`` test runs with a browser's cookie
        and with an API client's header (``SESSION_TRANSPORT``)."""
        return str(request.param)

    @pytest.fixture
    def app(self, counting: CountingStore, clock: Clock, transport: str) -> Flask:
        app = make_app(counting, idle_timeout=HOUR, absolute_timeout=24 * HOUR, transport=transport)
        _interface(app).clock = clock
        return app

    @pytest.fixture
    def client(self, app: Flask) -> FlaskClient:
        return app.test_client()
