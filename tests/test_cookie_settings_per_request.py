"""Flask's cookie settings are read per request, as Flask's own session interface reads them:
config set after ``ServerSession(app)`` applies (issue 14, item 8). An option given to
``ServerSession(...)`` overrides ``app.config``, then and later."""

from __future__ import annotations

from flask import Flask

from flask_serversession import ServerSession, current_session


def make_app(**options: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", TESTING=True)
    ServerSession(app, store="memory://", **options)

    @app.post("/set")
    def set_() -> str:
        current_session()["a"] = 1
        return ""

    @app.post("/end")
    def end() -> str:
        current_session().destroy()
        return ""

    return app


def cookie_header(app: Flask, *paths: str) -> str:
    client = app.test_client()
    header = ""
    for path in paths:
        response = client.post(path, base_url="https://www.example.com/app")
        header = response.headers.get("Set-Cookie", "")
    return header.lower()


def test_settings_set_after_init_apply_to_the_cookie() -> None:
    app = make_app()
    app.config.update(
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_DOMAIN="example.com",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
    )
    for header in (cookie_header(app, "/set"), cookie_header(app, "/set", "/end")):
        assert "session=" in header
        assert "path=/app" in header
        assert "domain=example.com" in header
        assert "samesite=strict" in header
        assert "secure" in header
        assert "httponly" not in header


def test_application_root_set_after_init_is_the_default_path() -> None:
    app = make_app()
    app.config["APPLICATION_ROOT"] = "/app"
    assert "path=/app" in cookie_header(app, "/set")


def test_an_option_overrides_config_set_later() -> None:
    app = make_app(cookie_path="/fixed")
    app.config["SESSION_COOKIE_PATH"] = "/later"
    assert "path=/fixed" in cookie_header(app, "/set")


def test_an_option_path_overrides_application_root_set_later() -> None:
    app = make_app(cookie_path="/fixed")
    app.config["APPLICATION_ROOT"] = "/later"
    assert "path=/fixed" in cookie_header(app, "/set")


def test_unchanged_settings_keep_our_defaults() -> None:
    app = make_app()
    app.config["SESSION_COOKIE_DOMAIN"] = "example.com"  # a change to another setting
    header = cookie_header(app, "/set")
    assert "samesite=lax" in header  # our default, where Flask's is none
    assert "domain=example.com" in header
