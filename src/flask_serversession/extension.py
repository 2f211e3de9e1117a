"""The Flask extension: ``ServerSession(app)`` or ``ServerSession().init_app(app)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from .config import Config, read_config
from .interface import ServerSessionInterface
from .stores import Store


@dataclass(frozen=True)
class _State:
    """What ``app.extensions["serversession"]`` holds for one app."""

    config: Config
    interface: ServerSessionInterface

    @property
    def store(self) -> Store:
        return self.config.store


class ServerSession:
    """Server-side sessions for a Flask app.

    ::

        app = Flask(__name__)
        app.secret_key = "change me"
        ServerSession(app)  # an SQLite file in app.instance_path

    :param app: the app to set up now; or call :meth:`init_app` later (app factories).
    :param store: a store URL (``"sqlite:///sessions.db"``, ``"memory://"``) or a
        :class:`~flask_serversession.stores.Store`; overrides ``SESSION_STORE``.
    :param options: configuration keys without the ``SESSION_`` prefix, lower case
        (``idle_timeout=3600``); they override ``app.config``. See :data:`config.KEYS`.

    .. versionadded:: 0.1
    """

    def __init__(
        self, app: Flask | None = None, store: Store | str | None = None, **options: Any
    ) -> None:
        self._store = store
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, store: Store | str | None = None) -> None:
        """Read the configuration, build the store and make it ``app``'s session interface.

        Raises :class:`~flask_serversession.errors.ConfigurationError` for bad configuration,
        so mistakes show at start-up, not on the first request.
        """
        config = read_config(app, self._options, store if store is not None else self._store)
        interface = ServerSessionInterface(config)
        app.session_interface = interface
        app.extensions["serversession"] = _State(config, interface)

    @staticmethod
    def store_of(app: Flask) -> Store:
        """The store ``app`` uses."""
        state: _State = app.extensions["serversession"]
        return state.store
