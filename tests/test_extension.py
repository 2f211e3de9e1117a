"""The extension's accessors: what the CLI and an app reach through ``ServerSession``."""

from __future__ import annotations

import inspect
from typing import Any

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


#: The manager's methods that ServerSession offers as shortcuts (on the app given or the current).
SHORTCUTS = ("sessions_of", "revoke", "revoke_user", "count", "clear_expired")


@pytest.mark.parametrize("name", SHORTCUTS)
def test_shortcuts_take_the_managers_parameters(name: str) -> None:
    """Each shortcut has the parameters of the manager's method (but for optional ones it may
    leave out, as ``progress``) and then ``app``: one implementation, signatures that cannot
    drift apart."""
    shortcut = list(inspect.signature(getattr(ServerSession, name)).parameters.values())
    method = list(inspect.signature(getattr(SessionManager, name)).parameters.values())
    assert shortcut[0].name == method[0].name == "self"
    assert shortcut[-1].name == "app" and shortcut[-1].default is None
    taken = shortcut[1:-1]
    assert taken == method[1 : len(taken) + 1]
    assert all(left.default is not inspect.Parameter.empty for left in method[len(taken) + 1 :])


def test_shortcuts_delegate_to_the_manager() -> None:
    """Each shortcut calls the manager of the app given (or of the current app) once, with the
    arguments given, and returns what it returned."""
    app = _app()
    extension = ServerSession(app, store="memory://")
    manager = ServerSession.manager(app)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    results: dict[str, Any] = {name: object() for name in SHORTCUTS}

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, args, kwargs))
            return results[name]

        return record

    for name in SHORTCUTS:
        setattr(manager, name, recorder(name))
    assert extension.sessions_of("alice", app) is results["sessions_of"]
    assert extension.revoke("h" * 43, app=app) is results["revoke"]
    with app.app_context():
        assert extension.revoke_user("alice", keep="k" * 43) is results["revoke_user"]
        assert extension.count() is results["count"]
        assert extension.clear_expired() is results["clear_expired"]
    assert calls == [
        ("sessions_of", ("alice",), {}),
        ("revoke", ("h" * 43,), {}),
        ("revoke_user", ("alice",), {"keep": "k" * 43}),
        ("count", (), {}),
        ("clear_expired", (), {}),
    ]
