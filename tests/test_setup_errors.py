"""Common set-up mistakes get one clear line that says what to do (issue 14, item 4)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo

from flask_serversession import ConfigurationError, ServerSession, store_from_url
from flask_serversession.cli import EXIT_CONFIG, sessions


def test_redis_url_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'flask-serversession\[redis\]'"):
        store_from_url("redis://127.0.0.1:6379/0")


def test_sqlite_file_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(ConfigurationError, match=str(missing)) as info:
        store_from_url(f"sqlite:///{missing / 'sessions.db'}")
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize("scheme", ["postgres", "postgres+psycopg"])
def test_postgres_scheme_suggests_postgresql(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match=r"write postgresql(\+psycopg)?://") as info:
        store_from_url(f"{scheme}://user:secret@db.example/app")
    assert "secret" not in str(info.value) and "known schemes" not in str(info.value)


def test_mysql_without_a_driver_names_the_mysql_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # mysql:// means mysqlclient to SQLAlchemy
    with pytest.raises(ConfigurationError) as info:
        store_from_url("mysql://user:secret@db.example/app")
    message = str(info.value)
    assert "mysql+pymysql://" in message and "PyMySQL" in message
    assert "psycopg" not in message and "secret" not in message


def test_cli_with_a_bad_store_url_says_one_line() -> None:
    """An app whose SESSION_STORE is wrong, run through `flask sessions`: one line on stderr and
    the documented exit code, not a traceback."""

    def create_app() -> Flask:
        app = Flask(__name__)
        app.secret_key = "cli"
        ServerSession(app, store="postgres://user:secret@db.example/app")
        return app

    result = CliRunner().invoke(sessions, ["list"], obj=ScriptInfo(create_app=create_app))
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "write postgresql://" in lines[0], result.output
