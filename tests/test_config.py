"""Configuration: defaults, Flask's keys honoured, mistakes refused at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_serversession import ConfigurationError, ServerSession
from flask_serversession.config import KEYS, read_config
from flask_serversession.extension import _State
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sqlite import SQLiteStore


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.secret_key = "k"
    app.config.update(config)
    return app


def _state(app: Flask) -> _State:
    state: _State = app.extensions["serversession"]
    return state


def test_default_store_is_sqlite_in_instance_folder(tmp_path: Path) -> None:
    app = _app(tmp_path)
    ServerSession(app)
    store = _state(app).store
    assert isinstance(store, SQLiteStore)
    assert Path(store.path).parent == tmp_path / "instance"
    assert Path(store.path).exists()


def test_store_from_config_and_argument(tmp_path: Path) -> None:
    app = _app(tmp_path, SESSION_STORE="memory://")
    ServerSession(app)
    assert isinstance(_state(app).store, MemoryStore)
    db = tmp_path / "given.db"
    app2 = _app(tmp_path, SESSION_STORE="memory://")
    ServerSession(app2, store=f"sqlite:///{db}")
    assert isinstance(_state(app2).store, SQLiteStore)
    store = MemoryStore()
    app3 = _app(tmp_path)
    ServerSession(app3, store=store)
    assert _state(app3).store is store


def test_init_app_serves_several_apps(tmp_path: Path) -> None:
    extension = ServerSession(store="memory://")
    first, second = _app(tmp_path), _app(tmp_path)
    extension.init_app(first)
    extension.init_app(second)
    assert _state(first).store is not _state(second).store
    assert not hasattr(extension, "app")


def test_idle_timeout_follows_a_lifetime_the_app_chose(tmp_path: Path) -> None:
    """PERMANENT_SESSION_LIFETIME set by the app is the idle timeout (as before); left at
    Flask's 31 days, it is not, and SESSION_IDLE_TIMEOUT wins over both."""
    for lifetime, idle in (
        (timedelta(hours=8), 8 * 3600),
        (3600, 3600),
        (timedelta(days=31), 1800),
    ):
        app = _app(tmp_path)
        app.config["PERMANENT_SESSION_LIFETIME"] = lifetime
        ServerSession(app, store="memory://")
        assert _state(app).config.idle_timeout == idle, lifetime
    app = _app(tmp_path)
    app.config.update(PERMANENT_SESSION_LIFETIME=timedelta(hours=8), SESSION_IDLE_TIMEOUT=600)
    ServerSession(app, store="memory://")
    assert _state(app).config.idle_timeout == 600


def test_defaults(tmp_path: Path) -> None:
    app = _app(tmp_path)
    ServerSession(app, store="memory://")
    config = _state(app).config
    assert config.idle_timeout == 30 * 60  # not Flask's 31-day cookie lifetime
    assert config.idle_timeout < config.absolute_timeout
    assert config.absolute_timeout == timedelta(days=30).total_seconds()
    assert config.cookie_httponly and config.cookie_samesite == "Lax"
    assert config.cookie_name == "session" and config.cookie_path == "/"
    assert config.max_size == 1024 * 1024


def test_options_override_config(tmp_path: Path) -> None:
    app = _app(tmp_path, SESSION_IDLE_TIMEOUT=100)
    ServerSession(app, store="memory://", idle_timeout=timedelta(minutes=5), touch_interval=10)
    config = _state(app).config
    assert config.idle_timeout == 300 and config.touch_interval == 10


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ({}, {"idle_timout": 5}, "unknown option"),
        ({"SESSION_IDLE_TIMEOUT": "10"}, {}, "SESSION_IDLE_TIMEOUT"),
        ({"SESSION_IDLE_TIMEOUT": -1}, {}, "positive"),
        ({"SESSION_MAX_SIZE": 0}, {}, "SESSION_MAX_SIZE"),
        ({"SESSION_TOUCH_INTERVAL": 100, "SESSION_IDLE_TIMEOUT": 50}, {}, "shorter"),
        ({"SESSION_COOKIE_SAMESITE": "sideways"}, {}, "SAMESITE"),
        ({"SESSION_COOKIE_SAMESITE": "None"}, {}, "SESSION_COOKIE_SECURE"),
        ({"SESSION_COOKIE_NAME": "__Host-s", "SESSION_COOKIE_DOMAIN": "a.com"}, {}, "Domain"),
        ({"SESSION_COOKIE_NAME": "__Host-s", "SESSION_COOKIE_PATH": "/app"}, {}, "PATH"),
        ({"SESSION_STORE": "nosuch://x"}, {}, "known schemes: .*memory://, .*sqlite://"),
        ({"SESSION_STORE": 42}, {}, "URL or a Store"),
        ({"SESSION_STORE": "memory://x"}, {}, "no options"),
        ({"SESSION_STORE": "sqlite://host/x.db"}, {}, "no host"),
        ({"SESSION_STORE": "sqlite:///x.db?colour=red"}, {}, "unknown SQLite option"),
        ({"SESSION_STORE": "sqlite:///x.db?timeout=soon"}, {}, "timeout"),
        ({"SESSION_STORE": "sqlite:///x.db?table=a;drop"}, {}, "table name"),
        ({"SESSION_STORE": "sqlite:///:memory:"}, {}, "memory://"),
    ],
)
def test_bad_configuration_fails_at_start(
    tmp_path: Path, config: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    app = _app(tmp_path, **config)
    with pytest.raises(ConfigurationError, match=message):
        ServerSession(app, **options)


def test_host_prefix_forces_its_rules(tmp_path: Path) -> None:
    app = _app(tmp_path, SESSION_COOKIE_NAME="__Host-session")
    ServerSession(app, store="memory://")
    config = _state(app).config
    assert config.cookie_secure and config.cookie_path == "/" and config.cookie_domain is None


def test_store_url_password_is_not_shown(tmp_path: Path) -> None:
    app = _app(tmp_path, SESSION_STORE="nosuch://user:hunter2@db/x")
    with pytest.raises(ConfigurationError) as info:
        ServerSession(app)
    assert "hunter2" not in str(info.value)


def test_every_key_is_documented() -> None:
    """docs/configuration.md holds exactly the rows of config.KEYS: the two cannot drift."""
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    documented = {line for line in doc.splitlines() if line.startswith("| `")}
    expected = {f"| `{key.name}` | {key.default} | {key.meaning} |" for key in KEYS}
    assert documented == expected


def test_anonymous_idle_timeout_is_the_idle_timeout_unless_set() -> None:
    app = Flask(__name__)
    app.config["SESSION_IDLE_TIMEOUT"] = timedelta(hours=8)
    config = read_config(app, {}, "memory://")
    assert config.idle_for(None) == config.idle_for("alice") == 8 * 3600
    app.config["SESSION_ANONYMOUS_IDLE_TIMEOUT"] = timedelta(minutes=30)
    config = read_config(app, {}, "memory://")
    assert (config.idle_for(None), config.idle_for("alice")) == (1800, 8 * 3600)
    assert config.touch_interval == 60


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SESSION_ANONYMOUS_IDLE_TIMEOUT": 7200}, "longer than the idle timeout"),
        ({"SESSION_ANONYMOUS_IDLE_TIMEOUT": 0}, "SESSION_ANONYMOUS_IDLE_TIMEOUT"),
        (
            {"SESSION_ANONYMOUS_IDLE_TIMEOUT": 100, "SESSION_TOUCH_INTERVAL": 120},
            "SESSION_TOUCH_INTERVAL must be shorter",
        ),
    ],
)
def test_anonymous_idle_timeout_refuses_what_cannot_work(
    settings: dict[str, object], message: str
) -> None:
    app = Flask(__name__)
    app.config.update(SESSION_IDLE_TIMEOUT=3600, **settings)
    with pytest.raises(ConfigurationError, match=message):
        read_config(app, {}, "memory://")
