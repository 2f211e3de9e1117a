"""A pytest plugin for Flask's own test suite: every ``app`` its fixtures build gets
``ServerSession(app, store="memory://")`` (used by tests/test_flask_suite.py)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from _pytest import monkeypatch
from _pytest.compat import NOTSET
from flask import Flask

from flask_serversession import ServerSession

# Flask 3.1.3's conftest uses ``_pytest.monkeypatch.notset``, which newer pytest calls NOTSET.
if not hasattr(monkeypatch, "notset"):
    monkeypatch.notset = NOTSET  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Generator[None, Any, None]:
    outcome = yield
    if fixturedef.argname == "app":
        app = outcome.get_result()
        if isinstance(app, Flask):
            ServerSession(app, store="memory://")
