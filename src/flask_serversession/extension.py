"""The Flask extension: ``ServerSession(app)`` or ``ServerSession().init_app(app)``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from .config import Config, read_config
from .errors import ConfigurationError
from .interface import ServerSessionInterface
from .manage import SessionInfo, SessionManager
from .stores import Store

logger = logging.getLogger("flask_serversession")

#: Why an app without ``SECRET_KEY`` cannot start through the Flask-Session entry: one line.
MISSING_SECRET_KEY = (
    "SECRET_KEY is not set: Flask-ServerSession signs the session ID in every cookie with it"
    " (Flask-Session did not, unless SESSION_USE_SIGNER), so no session could be saved; set"
    " app.secret_key before Session(app), e.g. to the output of"
    " python -c 'import secrets; print(secrets.token_hex())'"
)


@dataclass(frozen=True)
class _State:
    """What ``app.extensions["serversession"]`` holds for one app."""

    config: Config
    interface: ServerSessionInterface
    manager: SessionManager

    @property
    def store(self) -> Store:
        return self.config.store


def _state_of(app: Flask | None) -> _State:
    state: _State = (app or current_app).extensions["serversession"]
    return state


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
        (``idle_timeout=3600``); they override ``app.config``. See
        :data:`flask_serversession.config.KEYS`.

    .. versionadded:: 0.1
    """

    #: Refuse to start (:class:`~flask_serversession.errors.ConfigurationError`) when the app
    #: has no ``SECRET_KEY`` at :meth:`init_app`. Off here: like Flask, ``ServerSession`` reads
    #: the key on each request, so it may be set after ``init_app`` (a warning is logged; until
    #: it is set, sessions read empty and a write fails as Flask's own session does). On for
    #: :class:`Session` and whenever ``SESSION_TYPE`` is set: an app moving from Flask-Session,
    #: which needed no key, must learn at start-up that it now does.
    require_secret_key = False

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
        self._check_secret_key(app, config)
        interface = ServerSessionInterface(config)
        for make_plugin in config.plugins:  # e.g. migration, when Flask-Session keys ask for it
            plugin = make_plugin(interface)
            if plugin is not None:
                interface.add_plugin(plugin)
        app.session_interface = interface
        app.extensions["serversession"] = _State(
            config, interface, SessionManager(config, interface)
        )

    def _check_secret_key(self, app: Flask, config: Config) -> None:
        """Raise where a missing ``SECRET_KEY`` must stop start-up; else warn that it is
        missing."""
        if app.secret_key:
            return
        if self.require_secret_key or config.flask_session.session_type is not None:
            raise ConfigurationError(MISSING_SECRET_KEY)
        logger.warning(
            "SECRET_KEY is not set yet: until it is, sessions read empty and cannot be saved"
        )

    @staticmethod
    def is_set_up(app: Flask | None = None) -> bool:
        """Whether Flask-ServerSession is set up on ``app`` (the current app by default): the
        accessors below raise :exc:`KeyError` where it is not.

        .. versionadded:: 0.1
        """
        return "serversession" in (app or current_app).extensions

    @staticmethod
    def store_of(app: Flask) -> Store:
        """The store ``app`` uses."""
        return _state_of(app).store

    @staticmethod
    def config_of(app: Flask | None = None) -> Config:
        """The configuration in effect on ``app`` (the current app by default), as read at
        :meth:`init_app`: store, timeouts, cookie settings (see
        :data:`flask_serversession.config.KEYS`).

        .. versionadded:: 0.1
        """
        return _state_of(app).config

    # -- managing sessions: shortcuts to the manager ----------------------------------------------
    # One implementation, in SessionManager; each shortcut below is a one-line delegation to the
    # manager of ``app`` (the current app by default) and is documented there.
    # tests/test_extension.py checks that their parameters stay the manager's.

    @staticmethod
    def manager(app: Flask | None = None) -> SessionManager:
        """The management API of ``app`` (the current app by default)."""
        return _state_of(app).manager

    def sessions_of(self, user_id: str | int, app: Flask | None = None) -> list[SessionInfo]:
        """The live sessions of a user, most recently used first ("your devices"): a shortcut
        to :meth:`SessionManager.sessions_of <flask_serversession.SessionManager.sessions_of>`
        of ``app``."""
        return self.manager(app).sessions_of(user_id)

    def revoke(self, handle: str, app: Flask | None = None) -> bool:
        """End one session by handle; ``False`` if it was not live: a shortcut to
        :meth:`SessionManager.revoke <flask_serversession.SessionManager.revoke>` of ``app``."""
        return self.manager(app).revoke(handle)

    def revoke_user(
        self, user_id: str | int, keep: str | None = None, app: Flask | None = None
    ) -> int:
        """End a user's sessions except ``keep`` ("log out everywhere else": pass
        ``session.handle``); return how many were ended: a shortcut to
        :meth:`SessionManager.revoke_user <flask_serversession.SessionManager.revoke_user>`
        of ``app``."""
        return self.manager(app).revoke_user(user_id, keep=keep)

    def count(self, app: Flask | None = None) -> int:
        """How many sessions are live: a shortcut to
        :meth:`SessionManager.count <flask_serversession.SessionManager.count>` of ``app``."""
        return self.manager(app).count()

    def clear_expired(self, app: Flask | None = None) -> int:
        """Remove expired sessions now; return how many: a shortcut to
        :meth:`SessionManager.clear_expired <flask_serversession.SessionManager.clear_expired>`
        of ``app`` (which also takes a ``progress`` callback)."""
        return self.manager(app).clear_expired()


class Session(ServerSession):
    """Flask-Session's name for the extension: ``from flask_serversession import Session`` lets
    an app that used Flask-Session switch by changing only the import (see docs/migrating.md).

    It is :class:`ServerSession`, except that it refuses to start without ``SECRET_KEY``
    (:attr:`~ServerSession.require_secret_key`): Flask-Session worked without one, we sign
    every cookie with it.

    .. versionadded:: 0.1
    """

    require_secret_key = True
