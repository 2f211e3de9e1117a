"""The ``flask sessions`` command line, on every store that can do each command.

Real sessions are made through the test client of :func:`flask_serversession.testing.make_app`
(one client per device), the CLI runs on the same app, and the effect is checked from the
devices' side: a revoked device's next request finds an empty session.

Listing commands run on memory, SQLite, Redis, PostgreSQL and MariaDB; on Memcached (no index)
they answer with a clear error and exit code 4, while ``show`` and ``revoke`` by handle work.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from redis_servers import standalone
from servers import ServerProcess

from flask_serversession import ServerSession, Store, store_from_url
from flask_serversession.cli import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    EXIT_WARNINGS,
    _Progress,
    key_weakness,
    sessions,
)
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.stores import Record
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.testing import Clock, CountingStore, make_app

#: A strong key (make_app's own is short, so ``check`` would warn about it).
STRONG_KEY = secrets.token_hex(32)
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
STEP = 60.0  # seconds between one device's login and the next


# -- fixtures and helpers ------------------------------------------------------------------------


def _fresh() -> str:
    return f"cli{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(listing_store: Store) -> Store:
    """A fresh, empty store of each kind that can list sessions."""
    return listing_store


@pytest.fixture
def memcached(memcached_server: ServerProcess) -> Iterator[Store]:
    """A fresh Memcached store: no index, native expiry."""
    opened = store_from_url(f"memcached://127.0.0.1:{memcached_server.port}?prefix={_fresh()}:")
    yield opened
    opened.close()


@pytest.fixture
def local_store(any_store: Store) -> Store:
    """Memory and SQLite: for tests about the command line itself, not the stores."""
    return any_store


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


def _app(store: Store, clock: Clock | None = None, **options: Any) -> Flask:
    options.setdefault("record_client", True)
    app = make_app(store, **options)
    app.secret_key = STRONG_KEY
    if clock is not None:
        _interface(app).clock = clock
    return app


def _device(app: Flask, user: str | None, agent: str = AGENT) -> Device:
    """A new client with a session holding ``device``, logged in as ``user`` if given."""
    client = app.test_client()
    headers = {"User-Agent": agent}
    client.get(f"/set/device/{user or 'anon'}", headers=headers)
    if user is not None:
        client.get(f"/login/{user}", headers=headers)
    who: dict[str, Any] = client.get("/whoami", headers=headers).get_json()
    assert who["user"] == user and who["handle"]
    return Device(client, who["handle"], user)


def _run(app: Flask, *args: str) -> Result:
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


def _world(store: Store) -> World:
    clock = Clock(time.time() - 10 * STEP)
    app = _app(store, clock)
    devices = []
    for user in ("alice", "alice", "alice", "bob", None):
        devices.append(_device(app, user))
        clock.advance(STEP)
    return World(app, clock, devices[:3], devices[3], devices[4])


def _listed(app: Flask, *args: str) -> list[dict[str, Any]]:
    result = _run(app, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _count(app: Flask) -> int:
    result = _run(app, "stats", "--json")
    assert result.exit_code == 0, result.output
    count: int = json.loads(result.stdout)["count"]
    return count


# -- list, show ----------------------------------------------------------------------------------


def test_list_table(store: Store) -> None:
    world = _world(store)
    result = _run(world.app, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "HANDLE",
        "USER",
        "CREATED",
        "LAST",
        "SEEN",
        "EXPIRES",
        "IP",
        "USER",
        "AGENT",
    ]
    assert lines[-1] == "5 sessions"
    rows = lines[1:-1]
    # Most recently used first.
    assert [row.split()[0] for row in rows] == [d.handle for d in reversed(world.devices)]
    first_alice = rows[-1]
    # Expires: the default idle timeout, 30 minutes, from the last use.
    assert "alice" in first_alice and "5 min ago" in first_alice and "in 25 min" in first_alice
    assert "127.0.0.1" in first_alice and "Firefox/140.0" in first_alice
    anonymous = rows[0].split()
    assert anonymous[1] == "-" and "1 min ago" in rows[0]
    world.assert_no_secret_in(result)


def test_list_json_by_user_newest_first_and_limit(store: Store) -> None:
    world = _world(store)
    listed = _listed(world.app, "--user", "alice")
    assert [info["handle"] for info in listed] == [d.handle for d in reversed(world.alice)]
    for info in listed:
        assert info["user_id"] == "alice"
        assert info["ip"] == "127.0.0.1" and info["user_agent"] == AGENT
        for name in ("created", "last_seen", "expires", "authenticated_at"):
            assert datetime.fromisoformat(info[name]).utcoffset() is not None
        assert info["size"] > 0
    limited = _listed(world.app, "--user", "alice", "--limit", "2")
    assert [info["handle"] for info in limited] == [d.handle for d in world.alice[:0:-1]]
    everyone = _listed(world.app)
    assert {info["handle"] for info in everyone} == {d.handle for d in world.devices}
    assert len(_listed(world.app, "--limit", "3")) == 3
    assert _listed(world.app, "--user", "nobody") == []
    result = _run(world.app, "list", "--user", "nobody")
    assert result.exit_code == 0 and result.stdout == "No live sessions of user nobody.\n"
    assert _run(world.app, "list", "--limit", "0").exit_code == EXIT_USAGE


def test_show(store: Store) -> None:
    world = _world(store)
    device = world.alice[1]
    result = _run(world.app, "show", device.handle)
    assert result.exit_code == 0, result.output
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert fields["handle"] == device.handle
    assert fields["user"] == "alice"
    assert fields["ip"] == "127.0.0.1" and fields["user agent"] == AGENT
    assert fields["created"].endswith("UTC (4 min ago)")
    assert fields["authenticated"].endswith("UTC (4 min ago)")
    assert fields["expires"].endswith("(in 26 min)")  # 30 minutes idle from the last use
    world.assert_no_secret_in(result)

    result = _run(world.app, "show", "--json", world.anonymous.handle)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["handle"] == world.anonymous.handle
    assert shown["user_id"] is None and shown["authenticated_at"] is None


def test_show_and_revoke_refuse_unknown_and_malformed_handles(store: Store) -> None:
    world = _world(store)
    unknown = store_key(new_session_id())
    for command in ("show", "revoke"):
        result = _run(world.app, command, unknown)
        assert result.exit_code == EXIT_NOT_FOUND
        assert result.stderr == "Error: no live session with that handle\n"

        result = _run(world.app, command, "not-a-handle")
        assert result.exit_code == EXIT_USAGE
        assert "not a session handle" in result.stderr and "not-a-handle" not in result.output

        # A pasted cookie is refused without being echoed: it holds a session ID.
        cookie = world.bob.client.get_cookie("session")
        assert cookie is not None
        result = _run(world.app, command, cookie.value)
        assert result.exit_code == EXIT_USAGE
        assert "looks like a session cookie" in result.stderr
        assert world.bob.session_id not in result.output
    assert _count(world.app) == 5


def test_handles_may_begin_with_a_dash(local_store: Store) -> None:
    app = _app(local_store)
    dashed = next(key for key in iter(lambda: store_key(new_session_id()), "") if key[0] == "-")
    for command in ("show", "revoke"):
        result = _run(app, command, dashed)
        assert result.exit_code == EXIT_NOT_FOUND, result.output
        assert result.stderr == "Error: no live session with that handle\n"


# -- revoking ------------------------------------------------------------------------------------


def test_revoke(store: Store) -> None:
    world = _world(store)
    ended = world.alice[1]
    result = _run(world.app, "revoke", ended.handle)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Revoked session {ended.handle}.\n"
    # Its very next request finds an empty session; the others are untouched.
    assert ended.whoami() == {"user": None, "handle": None, "auth": None}
    assert ended.value() == "None"
    for device in (world.alice[0], world.alice[2], world.bob):
        assert device.whoami()["user"] == device.user
        assert device.value() == repr(device.user)
    assert _run(world.app, "revoke", ended.handle).exit_code == EXIT_NOT_FOUND


def test_revoke_user_keep(store: Store) -> None:
    world = _world(store)
    kept = world.alice[1]

    # A --keep that is not one of the user's sessions revokes nothing.
    result = _run(world.app, "revoke-user", "alice", "--keep", world.bob.handle)
    assert result.exit_code == EXIT_NOT_FOUND
    assert "nothing was revoked" in result.stderr
    assert len(_listed(world.app, "--user", "alice")) == 3

    result = _run(world.app, "revoke-user", "alice", "--keep", kept.handle)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 2 sessions of user alice (kept 1).\n"
    assert [info["handle"] for info in _listed(world.app, "--user", "alice")] == [kept.handle]
    assert kept.whoami()["user"] == "alice"
    for device in (world.alice[0], world.alice[2]):
        assert device.whoami()["user"] is None and device.value() == "None"
    assert world.bob.whoami()["user"] == "bob"

    result = _run(world.app, "revoke-user", "alice")
    assert result.exit_code == 0 and result.stdout == "Revoked 1 session of user alice.\n"
    assert kept.whoami()["user"] is None
    result = _run(world.app, "revoke-user", "alice")
    assert result.exit_code == 0 and result.stdout == "Revoked 0 sessions of user alice.\n"


def test_revoke_all_needs_yes(store: Store) -> None:
    world = _world(store)
    result = _run(world.app, "revoke-all")
    assert result.exit_code == EXIT_USAGE
    assert "--yes" in result.stderr and result.stdout == ""
    assert _count(world.app) == 5

    result = _run(world.app, "revoke-all", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 5 sessions.\n"
    assert _run(world.app, "list").stdout == "No live sessions.\n"
    for device in world.devices:
        assert device.whoami()["user"] is None and device.value() == "None"


def _fill(store: Store, count: int) -> list[str]:
    """``count`` live anonymous sessions written straight into ``store``; their handles."""
    now = time.time()
    handles = []
    for n in range(count):
        handle = store_key(new_session_id())
        assert store.create(handle, Record({"n": str(n)}, now, now, now + 3600, now + 86400))
        handles.append(handle)
    return handles


def test_revoke_all_shows_progress(store: Store) -> None:
    """More sessions than a page of the store's scan (500): progress per batch on stderr, the
    count on stdout, and every session over, seen from the API and from the devices."""
    app = _app(store, cleanup_batch_size=500)
    devices = [_device(app, user) for user in ("alice", "bob", None)]
    handles = _fill(store, 1197) + [device.handle for device in devices]
    assert _count(app) == 1200

    result = _run(app, "revoke-all", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 1,200 sessions.\n"
    assert result.stderr.splitlines() == [
        "batch 1: revoked 500 (500 so far)",
        "batch 2: revoked 500 (1,000 so far)",
        "batch 3: revoked 200 (1,200 so far)",
    ]
    assert _count(app) == 0
    for device in devices:
        assert device.whoami() == {"user": None, "handle": None, "auth": None}
        assert device.value() == "None"
    manager = ServerSession.manager(app)
    assert all(manager.get(handle) is None for handle in handles)

    result = _run(app, "revoke-all", "--yes")
    assert result.exit_code == 0 and result.stdout == "Revoked 0 sessions.\n"
    assert result.stderr == ""


def test_stats_shows_progress(store: Store) -> None:
    """Reading more sessions than a batch: progress per batch on stderr, the figures on
    stdout."""
    app = _app(store, cleanup_batch_size=500)
    _fill(store, 1200)
    result = _run(app, "stats", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 1200
    assert result.stderr.splitlines() == [
        "batch 1: read 500 (500 so far)",
        "batch 2: read 500 (1,000 so far)",
        "batch 3: read 200 (1,200 so far)",
    ]


class _KillsItsServer(CountingStore):
    """A real store whose server is killed (SIGKILL) right after the ``after``-th delete: the
    next call meets a real connection error."""

    def __init__(self, inner: Store, server: ServerProcess, after: int) -> None:
        super().__init__(inner)
        self.server = server
        self.after = after

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        super().delete(key, tombstone_until)
        if self.calls["delete"] == self.after:
            self.server.kill()


def test_revoke_all_reports_how_far_it_got_when_the_store_fails(tmp_path: Path) -> None:
    with standalone(tmp_path / "redis") as server:
        inner = store_from_url(f"redis://127.0.0.1:{server.port}/0?socket_timeout=2")
        try:
            _fill(inner, 1200)
            app = _app(_KillsItsServer(inner, server, after=700), cleanup_batch_size=500)
            result = _run(app, "revoke-all", "--yes")
        finally:
            inner.close()
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert result.stdout == ""
    *progress, error = result.stderr.splitlines()
    assert progress == ["batch 1: revoked 500 (500 so far)", "batch 2: revoked 200 (700 so far)"]
    assert error.startswith(
        "Error: revoke-all stopped after revoking 700 sessions (the others may still be live;"
        f" run it again to end them): session store redis://127.0.0.1:{server.port}/0 is"
        " unavailable: "
    )


class _Interrupted(CountingStore):
    """Ctrl-C after the ``after``-th delete."""

    def __init__(self, inner: Store, after: int) -> None:
        super().__init__(inner)
        self.after = after

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if self.calls["delete"] == self.after:
            raise KeyboardInterrupt
        super().delete(key, tombstone_until)


def test_revoke_all_interrupted(local_store: Store) -> None:
    handles = _fill(local_store, 30)
    app = _app(_Interrupted(local_store, after=25), cleanup_batch_size=10)
    result = _run(app, "revoke-all", "--yes")
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "batch 1: revoked 10 (10 so far)",
        "batch 2: revoked 10 (20 so far)",
        "batch 3: revoked 5 (25 so far)",
        "Error: interrupted; revoke-all stopped after revoking 25 sessions (the others may"
        " still be live; run it again to end them)",
    ]
    # The 25 it reported are over, the other 5 untouched: running it again finishes the job.
    records = [local_store.load(handle) for handle in handles]
    assert sum(1 for record in records if record is not None and record.ended) == 25
    assert _count(_app(local_store)) == 5
    result = _run(_app(local_store), "revoke-all", "--yes")
    assert result.exit_code == 0 and result.stdout == "Revoked 5 sessions.\n"


def test_revoke_all_store_down_from_the_start() -> None:
    app = Flask(__name__)
    app.secret_key = STRONG_KEY
    ServerSession(app, store="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    result = _run(app, "revoke-all", "--yes")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert result.stderr.startswith(
        "Error: revoke-all stopped before revoking any session: session store"
        " redis://127.0.0.1:1/0 is unavailable: "
    )
    assert len(result.stderr.splitlines()) == 1


# -- stats, clear-expired ------------------------------------------------------------------------


def test_stats(store: Store) -> None:
    world = _world(store)
    result = _run(world.app, "stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["count"] == 5 and stats["users"] == 2 and stats["anonymous"] == 1
    assert stats["by_age"] == {
        "under 1 hour": 5,
        "1 hour to 1 day": 0,
        "1 to 7 days": 0,
        "over 7 days": 0,
    }
    assert stats["size_bytes"]["total"] > 0 and stats["size_bytes"]["max"] > 0

    text = _run(world.app, "stats").stdout
    assert re.search(r"^Live sessions\s+5$", text, re.M)
    assert re.search(r"^  of users\s+4 \(2 distinct users\)$", text, re.M)
    assert re.search(r"^  anonymous\s+1$", text, re.M)
    assert re.search(r"^  under 1 hour\s+5$", text, re.M)
    assert re.search(r"^  total\s+[\d,]+ bytes$", text, re.M)


def test_clear_expired(store: Store) -> None:
    clock = Clock(time.time())
    app = _app(store, clock, idle_timeout=600, cleanup_batch_size=2)
    if not store.capabilities.clear_expired:
        result = _run(app, "clear-expired")
        assert result.exit_code == 0, result.output
        assert "expires sessions by itself: nothing needs doing" in result.stdout
        return

    old = [_device(app, None) for _ in range(5)]
    clock.advance(3600)  # the five idle out
    live = [_device(app, "carol") for _ in range(2)]
    result = _run(app, "clear-expired")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Removed 5 expired sessions.\n"
    assert result.stderr.splitlines() == [
        "batch 1: removed 2 (2 so far)",
        "batch 2: removed 2 (4 so far)",
        "batch 3: removed 1 (5 so far)",
    ]
    assert _count(app) == 2
    for device in live:
        assert device.whoami()["user"] == "carol"
    for device in old:
        assert store.load(device.handle) is None  # gone, not just expired

    result = _run(app, "clear-expired")
    assert result.stdout == "Removed 0 expired sessions.\n" and result.stderr == ""


def test_progress_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = _Progress(terminal)
    for removed in (1000, 1000, 7):
        progress(removed)
    progress.finish()
    assert terminal.getvalue() == (
        "\rRemoving expired sessions: 1,000"
        "\rRemoving expired sessions: 2,000"
        "\rRemoving expired sessions: 2,007\n"
    )

    terminal = Terminal()
    progress = _Progress(terminal, doing="Revoking sessions", done="revoked")
    for revoked in (500, 500, 200):
        progress(revoked)
    progress.finish()
    assert terminal.getvalue() == (
        "\rRevoking sessions: 500\rRevoking sessions: 1,000\rRevoking sessions: 1,200\n"
    )


# -- check ---------------------------------------------------------------------------------------


def _good(store: Store) -> Flask:
    return _app(store, cookie_secure=True, idle_timeout=1800)


def test_check_passes_on_a_good_config(store: Store) -> None:
    result = _run(_good(store), "check")
    assert result.exit_code == 0, result.output
    assert re.search(rf"^ok\s+the store {re.escape(store.name)} answered in", result.stdout, re.M)
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
    app = _good(MemoryStore())
    app.secret_key = key
    result = _run(app, "check")
    assert result.exit_code == EXIT_WARNINGS, result.output
    assert re.search(r"^warning\s+SECRET_KEY is weak: ", result.stdout, re.M)
    if len(key) > 8:
        assert key not in result.output


def test_key_weakness() -> None:
    assert key_weakness(STRONG_KEY) is None
    assert key_weakness(secrets.token_bytes(32)) is None
    assert key_weakness("dev") == "it is a well-known placeholder"
    assert key_weakness(b"x" * 20) == "it is 20 bytes long, under 32"


def test_check_errors_on_a_missing_key(local_store: Store) -> None:
    app = _good(local_store)
    app.secret_key = None
    result = _run(app, "check")
    assert result.exit_code == EXIT_CONFIG
    assert re.search(r"^error\s+SECRET_KEY is not set", result.stdout, re.M)


def test_check_warns_on_a_weak_fallback_key(local_store: Store) -> None:
    app = _good(local_store)
    app.config["SECRET_KEY_FALLBACKS"] = [secrets.token_hex(32), "changeme"]
    result = _run(app, "check")
    assert result.exit_code == EXIT_WARNINGS
    assert "SECRET_KEY_FALLBACKS[1] is weak: it is a well-known placeholder" in result.stdout


def test_check_is_clean_on_a_default_app(local_store: Store) -> None:
    """The library's defaults do not contradict each other: on an app that sets only a strong
    secret key and Secure cookies, check has nothing to say about its configuration."""
    result = _run(_app(local_store, cookie_secure=True, record_client=False), "check")
    assert result.exit_code == 0, result.output
    findings = [line for line in result.stdout.splitlines() if line.startswith(("note", "warn"))]
    assert [line for line in findings if "memory://" not in line] == []


def test_check_cookie_and_timeout_settings(local_store: Store) -> None:
    # Secure off is a note only: fine for local development.
    result = _run(_app(local_store, idle_timeout=1800), "check")
    assert result.exit_code == 0, result.output
    note = r"^note\s+SESSION_COOKIE_SECURE is off.*local development"
    assert re.search(note, result.stdout, re.M)

    result = _run(_app(local_store, cookie_secure=True, cookie_httponly=False), "check")
    assert result.exit_code == EXIT_WARNINGS
    assert re.search(r"^warning\s+SESSION_COOKIE_HTTPONLY is off", result.stdout, re.M)
    # The default timeouts agree (30 minutes idle, 30 days in all): no note about them.
    assert "idle timeout" not in result.stdout
    # An idle timeout that outlives the absolute one is a note: it never ends a session.
    result = _run(_app(local_store, idle_timeout=31 * 24 * 3600), "check")
    assert re.search(r"^note\s+the idle timeout \(31 days\) is not shorter", result.stdout, re.M)

    # SameSite=None without Secure: init_app refuses it, but check looks at what is in effect.
    app = _good(local_store)
    state = app.extensions["serversession"]
    insecure = dataclasses.replace(state.config, cookie_samesite="None", cookie_secure=False)
    app.extensions["serversession"] = dataclasses.replace(state, config=insecure)
    result = _run(app, "check")
    assert result.exit_code == EXIT_WARNINGS
    assert re.search(r"^warning\s+SESSION_COOKIE_SAMESITE is 'None' without", result.stdout, re.M)


def test_unreachable_store() -> None:
    app = Flask(__name__)
    app.secret_key = STRONG_KEY
    ServerSession(app, store="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    result = _run(app, "check")
    assert result.exit_code == EXIT_UNAVAILABLE
    error = r"^error\s+cannot reach the store: session store redis://127\.0\.0\.1:1"
    assert re.search(error, result.stdout, re.M)
    for command in (["list"], ["stats"], ["show", store_key(new_session_id())]):
        result = _run(app, *command)
        assert result.exit_code == EXIT_UNAVAILABLE, command
        assert result.stderr.startswith("Error: session store redis://127.0.0.1:1/0")
        assert len(result.stderr.splitlines()) == 1


def test_app_without_the_extension() -> None:
    app = Flask(__name__)
    result = _run(app, "list")
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.startswith("Error: Flask-ServerSession is not set up on this app")


def test_help_documents_exit_codes() -> None:
    result = _run(Flask(__name__), "--help")
    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    for code in range(6):
        assert re.search(rf"^    {code}  ", result.stdout, re.M)


def test_client_text_is_escaped(local_store: Store) -> None:
    app = _app(local_store)
    device = _device(app, "mallory", agent="evil\x1b]0;owned\x07\x1b[2J")
    for command in (["list"], ["show", device.handle]):
        result = _run(app, *command)
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "evil\\x1b]0;owned\\x07\\x1b[2J" in result.stdout
    # JSON escapes it by itself.
    assert _listed(app)[0]["user_agent"] == "evil\x1b]0;owned\x07\x1b[2J"


# -- Memcached: no index -------------------------------------------------------------------------


def test_memcached_listing_commands_are_unsupported(memcached: Store) -> None:
    app = _good(memcached)
    device = _device(app, "alice")
    name = re.escape(memcached.name)
    for command, why in (
        (["list"], "list sessions: it has no index of them"),
        (["list", "--json"], "list sessions: it has no index of them"),
        (["list", "--user", "alice"], "find a user's sessions: it has no per-user index"),
        (["revoke-user", "alice"], "find a user's sessions: it has no per-user index"),
        (["revoke-user", "alice", "--keep", device.handle], "find a user's sessions"),
        (["revoke-all", "--yes"], "list sessions: it has no index of them"),
        (["stats"], "list sessions: it has no index of them"),
    ):
        result = _run(app, *command)
        assert result.exit_code == EXIT_UNSUPPORTED, (command, result.output)
        assert re.fullmatch(rf"Error: this store \({name}\) cannot {why}.*\n", result.stderr)
        assert result.stdout == ""
    assert device.whoami()["user"] == "alice"  # nothing was revoked


def test_memcached_show_revoke_clear_and_check(memcached: Store) -> None:
    app = _good(memcached)
    device = _device(app, "alice")
    other = _device(app, "alice")

    result = _run(app, "show", "--json", device.handle)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["user_id"] == "alice"

    result = _run(app, "revoke", device.handle)
    assert result.exit_code == 0, result.output
    assert device.whoami()["user"] is None and device.value() == "None"
    assert other.whoami()["user"] == "alice"
    assert _run(app, "show", device.handle).exit_code == EXIT_NOT_FOUND

    result = _run(app, "clear-expired")
    assert result.exit_code == 0
    assert result.stdout == (
        f"This store ({memcached.name}) expires sessions by itself: nothing needs doing.\n"
    )

    result = _run(app, "check")
    assert result.exit_code == 0, result.output
    assert re.search(r"^note\s+this store cannot list sessions", result.stdout, re.M)
