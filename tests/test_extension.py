"""The extension's accessors: what the CLI and an app reach through ``ServerSession``."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_serversession import ServerSession, SessionManager
from flask_serversession.config import Config


def _app() -> Flask:
    app = Flask(__name__)
    app.secret_key = "x" * 32
    return app


def test_accessors_of_a_set_up_app() -> None:
    app = _app()
    ServerSession(app, store="memory://", idle_timeout=600)
    assert ServerSession.is_set_up(app)
    config = ServerSession.config_of(app)
    assert isinstance(config, Config)
    assert config.idle_timeout == 600
    assert ServerSession.store_of(app) is config.store
    manager = ServerSession.manager(app)
    assert isinstance(manager, SessionManager)
    assert manager.store is config.store
    with app.app_context():  # the current app by default
        assert ServerSession.is_set_up()
        assert ServerSession.config_of() is config
        assert ServerSession.manager() is manager


def test_accessors_of_an_app_without_the_extension() -> None:
    app = _app()
    assert not ServerSession.is_set_up(app)
    with pytest.raises(KeyError):
        ServerSession.config_of(app)
    with pytest.raises(KeyError):
        ServerSession.store_of(app)
    with pytest.raises(KeyError):
        ServerSession.manager(app)
