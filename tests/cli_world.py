"""The ``flask sessions`` tests' world: an app, its devices, and the command line run on it.

Real sessions are made through the test client of :func:`flask_serversession.testing.make_app`
(one client per device), the CLI runs on the same app, and the effect is checked from the
devices' side: a revoked device's next request finds an empty session.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from flask_serversession import Store
from flask_serversession.cli import sessions
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.stores import Record
from flask_serversession.testing import Clock, make_app

#: A strong key (make_app's own is short, so ``check`` would warn about it).
STRONG_KEY = secrets.token_hex(32)
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
STEP = 60.0  # seconds between one device's login and the next


@dataclass
class Device:
    """One browser: its test client and its session's handle."""

    client: FlaskClient
    handle: str
    user: str | None

    def whoami(self) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get("/whoami").get_json()
        return found

    def value(self) -> str:
        """The value it stored when it was set up, or ``'None'`` once its session is gone."""
        return self.client.get("/get/device").get_data(as_text=True)

    @property
    def session_id(self) -> str:
        cookie = self.client.get_cookie("session")
        assert cookie is not None
        return cookie.value.partition(".")[0]


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def cli_app(store: Store, clock: Clock | None = None, **options: Any) -> Flask:
    options.setdefault("record_client", True)
    app = make_app(store, **options)
    app.secret_key = STRONG_KEY
    if clock is not None:
        _interface(app).clock = clock
    return app


def new_device(app: Flask, user: str | None, agent: str = AGENT) -> Device:
    """A new client with a session holding ``device``, logged in as ``user`` if given."""
    client = app.test_client()
    headers = {"User-Agent": agent}
    client.get(f"/set/device/{user or 'anon'}", headers=headers)
    if user is not None:
        client.get(f"/login/{user}", headers=headers)
    who: dict[str, Any] = client.get("/whoami", headers=headers).get_json()
    assert who["user"] == user and who["handle"]
    return Device(client, who["handle"], user)


def run_cli(app: Flask, *args: str) -> Result:
    """Invoke ``flask sessions ARGS``; it never ends in a traceback."""
    result = app.test_cli_runner().invoke(sessions, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@dataclass
class World:
    """Three devices of alice, one of bob, one anonymous visitor, logged in a minute apart."""

    app: Flask
    clock: Clock
    alice: list[Device]
    bob: Device
    anonymous: Device

    @property
    def devices(self) -> list[Device]:
        return [*self.alice, self.bob, self.anonymous]

    def assert_no_secret_in(self, result: Result) -> None:
        for device in self.devices:
            assert device.session_id not in result.output
        assert STRONG_KEY not in result.output


def make_world(store: Store) -> World:
    clock = Clock(time.time() - 10 * STEP)
    app = cli_app(store, clock)
    devices = []
    for user in ("alice", "alice", "alice", "bob", None):
        devices.append(new_device(app, user))
        clock.advance(STEP)
    return World(app, clock, devices[:3], devices[3], devices[4])


def list_json(app: Flask, *args: str) -> list[dict[str, Any]]:
    result = run_cli(app, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def live_count(app: Flask) -> int:
    result = run_cli(app, "stats", "--json")
    assert result.exit_code == 0, result.output
    count: int = json.loads(result.stdout)["count"]
    return count


def fill_store(store: Store, count: int) -> list[str]:
    """``count`` live anonymous sessions written straight into ``store``; their handles."""
    now = time.time()
    handles = []
    for n in range(count):
        handle = store_key(new_session_id())
        assert store.create(handle, Record({"n": str(n)}, now, now, now + 3600, now + 86400))
        handles.append(handle)
    return handles


def good_app(store: Store) -> Flask:
    return cli_app(store, cookie_secure=True, idle_timeout=1800)
