"""Plug-ins stay outside the core: the library works with the migration package gone, and the
package attaches only when its configuration asks for it."""

from __future__ import annotations

import os

from flask import Flask
from without_module import run_without

from flask_serversession import ServerSession
from flask_serversession.interface import ServerSessionInterface

#: Runs in a fresh interpreter where importing flask_serversession.migrate fails.
_WITHOUT_MIGRATE = """
    import sys

    from flask import Flask, session

    import flask_serversession
    from flask_serversession import ServerSession
    from flask_serversession import cli, config, extension, interface, manage, saving, stores
    from flask_serversession import session as session_module

    app = Flask(__name__)
    app.secret_key = "test"
    ServerSession(app, store="memory://")

    @app.post("/set")
    def set_value():
        session["colour"] = "blue"
        return ""

    @app.get("/get")
    def get_value():
        return session.get("colour", "none")

    @app.post("/pop")
    def pop_value():
        return session.pop("colour", "none")

    client = app.test_client()
    assert client.post("/set").status_code == 200
    assert client.get("/get").text == "blue"
    assert client.post("/pop").text == "blue"
    assert client.get("/get").text == "none"
    assert app.session_interface.plugins == []
    loaded = sorted(name for name in sys.modules if name.startswith("flask_serversession.migrate"))
    assert loaded == [], loaded
    print("ok")
    """


def test_the_library_works_without_the_migration_package() -> None:
    assert run_without("flask_serversession.migrate", _WITHOUT_MIGRATE).strip() == "ok"


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def test_migration_attaches_only_when_configured() -> None:
    plain = Flask(__name__)
    plain.secret_key = "test"
    ServerSession(plain, store="memory://")
    assert _interface(plain).plugins == []

    migrating = Flask(__name__)
    migrating.secret_key = "test"
    migrating.config["SESSION_MIGRATE_COOKIE_SESSIONS"] = True
    ServerSession(migrating, store="memory://")
    from flask_serversession.migrate import Migration

    [plugin] = _interface(migrating).plugins
    assert isinstance(plugin, Migration)


def test_core_modules_do_not_import_the_migration_package() -> None:
    """No module of the core names the package at module level (a lazy import inside the
    function that reads its configuration keys is the only way in)."""
    import flask_serversession

    root = os.path.dirname(flask_serversession.__file__)
    core = ("interface.py", "session.py", "saving.py", "manage.py", "config.py", "extension.py")
    for name in core:
        with open(os.path.join(root, name), encoding="utf-8") as file:
            for line in file:
                if line.startswith(("import ", "from ")):
                    assert "migrate" not in line, (name, line)
