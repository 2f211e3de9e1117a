"""What ``flask sessions check`` finds, as data: :mod:`flask_serversession.checks` without click."""

from __future__ import annotations

import dataclasses
import secrets

from flask import Flask

from flask_serversession import ServerSession
from flask_serversession.checks import (
    CheckReport,
    Finding,
    check_app,
    check_config,
    check_keys,
    check_store,
)
from flask_serversession.cli_text import plural, printable, span
from flask_serversession.config import Config
from flask_serversession.stores.memory import MemoryStore

STRONG_KEY = secrets.token_hex(32)


def _config(app: Flask) -> Config:
    return ServerSession.manager(app).config


def _app(secret: str | None = STRONG_KEY, **options: object) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    ServerSession(app, store="memory://", **options)
    return app


def test_check_store_on_memory() -> None:
    findings, unreachable = check_store(MemoryStore())
    assert not unreachable
    assert [finding.level for finding in findings] == ["ok", "note"]
    assert findings[0].message.startswith("the store memory:// answered in ")
    assert findings[1].message.startswith("memory:// keeps sessions in this process only")


def test_check_store_unreachable() -> None:
    app = _app(None)
    ServerSession(app, store="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    findings, unreachable = check_store(ServerSession.store_of(app))
    assert unreachable
    assert findings[0].level == "error"
    assert findings[0].message.startswith("cannot reach the store: ")


def test_check_keys() -> None:
    assert check_keys(STRONG_KEY, ()) == []
    (missing,) = check_keys(None, ())
    assert missing.level == "error" and missing.message.startswith("SECRET_KEY is not set")
    (weak,) = check_keys("change me", [STRONG_KEY])
    assert weak == Finding(
        "warning",
        "SECRET_KEY is weak: it is a well-known placeholder; generate one with:"
        " python -c 'import secrets; print(secrets.token_hex())'",
    )
    (fallback,) = check_keys(STRONG_KEY, [STRONG_KEY, b"short", 42])
    assert fallback.level == "warning"
    assert fallback.message.startswith("SECRET_KEY_FALLBACKS[1] is weak: it is 5 bytes long")
    assert "short" not in fallback.message  # never quotes a key


def test_check_config() -> None:
    config = _config(_app(cookie_secure=True))
    assert check_config(config) == []
    insecure = dataclasses.replace(
        config, cookie_samesite="None", cookie_secure=False, cookie_httponly=False
    )
    levels = [finding.level for finding in check_config(insecure)]
    assert levels == ["warning", "note", "warning"]
    never = dataclasses.replace(config, idle_timeout=config.absolute_timeout)
    (note,) = check_config(never)
    assert note.level == "note"
    assert note.message.startswith("the idle timeout (30 days) is not shorter")


def test_check_app_report() -> None:
    app = _app(cookie_secure=True)
    report = check_app(app, _config(app))
    assert isinstance(report, CheckReport)
    assert not report.unreachable and not report.missing_key
    assert [finding.level for finding in report.findings] == ["ok", "note"]
    assert report.count("note") == 1 and report.count("warning") == 0

    app = _app(None)
    report = check_app(app, _config(app))
    assert report.missing_key
    assert report.count("error") == 1
    # In the order the command prints them: the store, then the keys, then the settings.
    levels = [finding.level for finding in report.findings]
    assert levels == ["ok", "note", "error", "note"]


def test_cli_text() -> None:
    assert printable("Firefox\x1b[2J") == "Firefox\\x1b[2J"
    assert printable("plain") == "plain"
    assert [span(s) for s in (40, 300, 7200, 30 * 86400)] == ["40 s", "5 min", "2 h", "30 days"]
    assert plural(1, "session") == "1 session"
    assert plural(1024, "session") == "1,024 sessions"
