"""The Flask-Login recipe (docs/recipes/flask-login.md), run as written.

The recipe's ``python`` code blocks, in order, are the app under test: they are written to a
module in a temp dir and imported, so its default SQLite store lives there too.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import flask_login  # type: ignore[import-untyped]
import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_serversession import ServerSession
from flask_serversession.interface import ServerSessionInterface

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "docs" / "recipes" / "flask-login.md"

#: Flask-Login 0.6 sets its remember cookie's expiry with datetime.utcnow(), deprecated in 3.12.
UTCNOW = "ignore:datetime.datetime.utcnow:DeprecationWarning"


def recipe_code() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", RECIPE.read_text(), re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4, "the recipe's code blocks were not found"
    return f"# The python blocks of {RECIPE}, in order.\n" + "\n\n".join(blocks)


@pytest.fixture
def recipe(tmp_path: Path) -> Iterator[ModuleType]:
    path = tmp_path / "flask_login_recipe.py"
    path.write_text(recipe_code())
    spec = importlib.util.spec_from_file_location("flask_login_recipe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        app: Flask = module.app
        app.config["TESTING"] = True
        assert Path(app.instance_path).is_relative_to(tmp_path)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture
def app(recipe: ModuleType) -> Flask:
    created: Flask = recipe.app
    return created


def log_in(client: FlaskClient, password: str = "wonderland", remember: bool = False) -> int:
    data = {"username": "alice", "password": password}
    if remember:
        data["remember"] = "on"
    return client.post("/login", data=data).status_code


def current_user_after_get(client: FlaskClient) -> tuple[bool, str | None]:
    """Flask-Login's view of ``GET /``: (authenticated?, user ID)."""
    with client:
        client.get("/")
        user = flask_login.current_user
        return bool(user.is_authenticated), user.get_id()


def test_the_recipe_runs_on_flask_login(recipe: ModuleType) -> None:
    assert recipe.login_manager is not None
    assert recipe.serversession is not None


def test_login_binds_the_session_to_the_user(app: Flask) -> None:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "Laptop/1.0"
    assert current_user_after_get(client) == (False, None)
    assert log_in(client, "wrong") == 401
    assert log_in(client) == 302
    assert current_user_after_get(client) == (True, "alice")
    assert client.get("/").text == "Hello alice"
    [info] = ServerSession.manager(app).sessions_of("alice")
    assert info.user_id == "alice" and info.authenticated_at is not None
    assert info.user_agent == "Laptop/1.0"
    cookie = client.get_cookie("session")
    assert cookie is not None and "alice" not in cookie.value


def test_a_password_change_logs_out_every_other_session(app: Flask) -> None:
    laptop, phone = app.test_client(), app.test_client()
    assert log_in(laptop) == 302
    assert log_in(phone) == 302
    assert current_user_after_get(laptop) == (True, "alice")
    assert current_user_after_get(phone) == (True, "alice")
    assert len(ServerSession.manager(app).sessions_of("alice")) == 2

    refused = phone.post("/password", data={"current": "guess", "new": "x"})
    assert refused.status_code == 403
    response = phone.post("/password", data={"current": "wonderland", "new": "looking glass"})
    assert response.text == "Password changed; 1 other session(s) logged out."

    assert current_user_after_get(laptop) == (False, None)  # its very next request
    assert laptop.get("/").text == "Hello stranger"
    assert current_user_after_get(phone) == (True, "alice")  # the one that changed it
    [left] = ServerSession.manager(app).sessions_of("alice")
    assert left.handle is not None

    # Later (past the few seconds in which requests sent before the revocation may still
    # arrive and must change nothing), that browser can log in again, with the new password.
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    interface.clock = lambda: time.time() + 60
    assert log_in(laptop, "wonderland") == 401
    assert log_in(laptop, "looking glass") == 302
    assert current_user_after_get(laptop) == (True, "alice")


def test_logout_ends_the_session(app: Flask) -> None:
    client = app.test_client()
    assert log_in(client) == 302
    old = client.get_cookie("session")
    assert old is not None
    assert client.post("/logout").status_code == 302
    assert current_user_after_get(client) == (False, None)
    assert ServerSession.manager(app).sessions_of("alice") == []
    replay = app.test_client()
    replay.set_cookie("session", old.value)
    assert current_user_after_get(replay) == (False, None)


@pytest.mark.filterwarnings(UTCNOW)
def test_remember_me_logins_are_bound_and_logout_clears_the_cookie(app: Flask) -> None:
    client = app.test_client()
    assert log_in(client, remember=True) == 302
    assert client.get_cookie("remember_token") is not None
    client.delete_cookie("session")  # the browser was closed; the remember cookie stays
    assert current_user_after_get(client) == (True, "alice")
    infos = ServerSession.manager(app).sessions_of("alice")
    assert len(infos) == 2  # the closed browser's session, and the one the cookie began

    assert client.post("/logout").status_code == 302
    assert client.get_cookie("remember_token") is None  # logout_user() could clear it
    assert current_user_after_get(client) == (False, None)
    assert len(ServerSession.manager(app).sessions_of("alice")) == 1
