"""``flask sessions check`` and what every command does on a broken setup: weak keys, cookie
and timeout settings, an unreachable store, an app without the extension, hostile client text.
"""

from __future__ import annotations

import dataclasses
import re
import secrets

import pytest
from cli_world import STRONG_KEY, cli_app, good_app, list_json, new_device, run_cli
from flask import Flask

from flask_serversession import ServerSession, Store
from flask_serversession.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_WARNINGS, key_weakness
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores.memory import MemoryStore


def test_check_passes_on_a_good_config(listing_store: Store) -> None:
    result = run_cli(good_app(listing_store), "check")
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"^ok\s+the store {re.escape(listing_store.name)} answered in", result.stdout, re.M
    )
    assert "warning" not in result.stdout and "error" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith("check: all good")
    assert STRONG_KEY not in result.output


@pytest.mark.parametrize(
    "key",
    [
        "dev",
        "xyz",
        "changeme",
        "Change me!",
        "secret",
        "short-but-random-4f9a",
        "please-change-me-before-going-live-0123456789abcdef",
        "a" * 64,
    ],
)
def test_check_warns_on_a_weak_key(key: str) -> None:
    app = good_app(MemoryStore())
    app.secret_key = key
    result = run_cli(app, "check")
    assert result.exit_code == EXIT_WARNINGS, result.output
    assert re.search(r"^warning\s+SECRET_KEY is weak: ", result.stdout, re.M)
    if len(key) > 8:
        assert key not in result.output


def test_key_weakness() -> None:
    assert key_weakness(STRONG_KEY) is None
    assert key_weakness(secrets.token_bytes(32)) is None
    assert key_weakness("dev") == "it is a well-known placeholder"
    assert key_weakness(b"x" * 20) == "it is 20 bytes long, under 32"


def test_check_errors_on_a_missing_key(any_store: Store) -> None:
    app = good_app(any_store)
    app.secret_key = None
    result = run_cli(app, "check")
    assert result.exit_code == EXIT_CONFIG
    assert re.search(r"^error\s+SECRET_KEY is not set", result.stdout, re.M)


def test_check_warns_on_a_weak_fallback_key(any_store: Store) -> None:
    app = good_app(any_store)
    app.config["SECRET_KEY_FALLBACKS"] = [secrets.token_hex(32), "changeme"]
    result = run_cli(app, "check")
    assert result.exit_code == EXIT_WARNINGS
    assert "SECRET_KEY_FALLBACKS[1] is weak: it is a well-known placeholder" in result.stdout


def test_check_is_clean_on_a_default_app(any_store: Store) -> None:
    """The library's defaults do not contradict each other: on an app that sets only a strong
    secret key and Secure cookies, check has nothing to say about its configuration."""
    result = run_cli(cli_app(any_store, cookie_secure=True, record_client=False), "check")
    assert result.exit_code == 0, result.output
    findings = [line for line in result.stdout.splitlines() if line.startswith(("note", "warn"))]
    assert [line for line in findings if "memory://" not in line] == []


def test_check_cookie_and_timeout_settings(any_store: Store) -> None:
    # Secure off is a note only: fine for local development.
    result = run_cli(cli_app(any_store, idle_timeout=1800), "check")
    assert result.exit_code == 0, result.output
    note = r"^note\s+SESSION_COOKIE_SECURE is off.*local development"
    assert re.search(note, result.stdout, re.M)

    result = run_cli(cli_app(any_store, cookie_secure=True, cookie_httponly=False), "check")
    assert result.exit_code == EXIT_WARNINGS
    assert re.search(r"^warning\s+SESSION_COOKIE_HTTPONLY is off", result.stdout, re.M)
    # The default timeouts agree (30 minutes idle, 30 days in all): no note about them.
    assert "idle timeout" not in result.stdout
    # An idle timeout that outlives the absolute one is a note: it never ends a session.
    result = run_cli(cli_app(any_store, idle_timeout=31 * 24 * 3600), "check")
    assert re.search(r"^note\s+the idle timeout \(31 days\) is not shorter", result.stdout, re.M)

    # SameSite=None without Secure: init_app refuses it, but check looks at what is in effect.
    app = good_app(any_store)
    state = app.extensions["serversession"]
    insecure = dataclasses.replace(state.config, cookie_samesite="None", cookie_secure=False)
    app.extensions["serversession"] = dataclasses.replace(state, config=insecure)
    result = run_cli(app, "check")
    assert result.exit_code == EXIT_WARNINGS
    assert re.search(r"^warning\s+SESSION_COOKIE_SAMESITE is 'None' without", result.stdout, re.M)


def test_unreachable_store() -> None:
    app = Flask(__name__)
    app.secret_key = STRONG_KEY
    ServerSession(app, store="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    result = run_cli(app, "check")
    assert result.exit_code == EXIT_UNAVAILABLE
    error = r"^error\s+cannot reach the store: session store redis://127\.0\.0\.1:1"
    assert re.search(error, result.stdout, re.M)
    for command in (["list"], ["stats"], ["show", store_key(new_session_id())]):
        result = run_cli(app, *command)
        assert result.exit_code == EXIT_UNAVAILABLE, command
        assert result.stderr.startswith("Error: session store redis://127.0.0.1:1/0")
        assert len(result.stderr.splitlines()) == 1


def test_app_without_the_extension() -> None:
    app = Flask(__name__)
    result = run_cli(app, "list")
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.startswith("Error: Flask-ServerSession is not set up on this app")


def test_help_documents_exit_codes() -> None:
    result = run_cli(Flask(__name__), "--help")
    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    for code in range(6):
        assert re.search(rf"^    {code}  ", result.stdout, re.M)


def test_client_text_is_escaped(any_store: Store) -> None:
    app = cli_app(any_store)
    device = new_device(app, "mallory", agent="evil\x1b]0;owned\x07\x1b[2J")
    for command in (["list"], ["show", device.handle]):
        result = run_cli(app, *command)
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "evil\\x1b]0;owned\\x07\\x1b[2J" in result.stdout
    # JSON escapes it by itself.
    assert list_json(app)[0]["user_agent"] == "evil\x1b]0;owned\x07\x1b[2J"
