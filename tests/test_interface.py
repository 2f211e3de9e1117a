"""The request cycle: signals, errors as responses, cookie attributes, corrupt records."""

from __future__ import annotations

import logging
import pickle
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_serversession import (
    ServerSession,
    ServerSideSession,
    SessionStoreUnavailable,
    SessionTooLarge,
    SessionTooManyKeys,
    session_created,
    session_destroyed,
    session_regenerated,
    session_rejected,
)
from flask_serversession.ids import store_key
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.stores import Patch, Record, Store, Touch, values_size
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sqlite import SQLiteStore
from flask_serversession.testing import make_app


class OutageStore(MemoryStore):
    """A memory store whose writes fail, as a store that went down after the load would."""

    writes_fail = False

    def patch(self, key: str, patch: Patch) -> bool:
        if self.writes_fail:
            raise SessionStoreUnavailable(self.name, "connection refused")
        return super().patch(key, patch)


class RacingStore(MemoryStore):
    """A memory store on which other requests act at chosen moments: ``refusals`` patches with
    a size limit are refused as another writer's growth would (then shrunk again before the
    caller looks), and ``after_load`` runs once after the next load."""

    refusals = 0
    after_load: Callable[[], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        self.calls.append("load")
        record = super().load(key, touch)
        hook, self.after_load = self.after_load, None
        if hook is not None:
            hook()
        return record

    def patch(self, key: str, patch: Patch) -> bool:
        self.calls.append("patch")
        if patch.max_size is not None and self.refusals:
            self.refusals -= 1
            return False
        return super().patch(key, patch)


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name, signal in [
        ("created", session_created),
        ("regenerated", session_regenerated),
        ("destroyed", session_destroyed),
        ("rejected", session_rejected),
    ]:

        def receiver(sender: Flask, _name: str = name, **extra: Any) -> None:
            seen.append((_name, extra))

        signal.connect(receiver)
        receivers.append((signal, receiver))
    yield seen
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def test_signals(events: list[tuple[str, dict[str, Any]]]) -> None:
    client = make_app(MemoryStore()).test_client()
    client.get("/set/user/alice")
    client.get("/regenerate")
    client.get("/destroy")
    client.set_cookie("session", "forged.value")
    client.get("/get/user")
    assert [name for name, _ in events] == ["created", "regenerated", "destroyed", "rejected"]
    assert events[-1][1] == {"reason": "bad-signature"}


def test_store_failure_at_save_is_a_503(caplog: pytest.LogCaptureFixture) -> None:
    store = OutageStore()
    app = make_app(store)
    app.testing = False
    client = app.test_client()
    client.get("/set/user/alice")
    store.writes_fail = True
    with caplog.at_level(logging.WARNING, "flask_serversession"):
        response = client.get("/rw/user/bob")
    assert response.status_code == 503
    assert "temporarily unavailable" in response.text
    assert "Set-Cookie" not in response.headers
    assert "connection refused" in caplog.text
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.value.split(".")[0] not in caplog.text
    store.writes_fail = False
    assert client.get("/get/user").text == "'alice'"


def test_app_handler_for_outage_is_used_at_save() -> None:
    store = OutageStore()
    app = make_app(store)

    @app.errorhandler(SessionStoreUnavailable)
    def outage(exc: SessionStoreUnavailable) -> tuple[str, int]:
        return f"custom: {exc.reason}", 500

    client = app.test_client()
    client.get("/set/user/alice")
    store.writes_fail = True
    response = client.get("/set/user/bob")
    assert response.status_code == 500 and response.text == "custom: connection refused"


def test_size_refusal_of_a_session_within_the_limit_is_retried() -> None:
    """The store refused an assign-only patch as too large, but the session read then fits (a
    request that overlapped shrank it meanwhile): the patch is tried again and lands."""
    store = RacingStore()
    client = make_app(store, max_size=1000).test_client()
    client.get("/set/a/1")
    store.calls.clear()
    store.refusals = 1
    assert client.get("/set/b/2").status_code == 200
    assert store.calls == ["patch", "load", "patch"]
    assert client.get("/dump").json == {"a": "'1'", "b": "'2'"}


def test_size_refusals_that_never_settle_are_a_503(caplog: pytest.LogCaptureFixture) -> None:
    """Refused as too large every time yet within the limit every time it is read: after three
    tries the change is dropped and the client told to retry, as for an outage."""
    store = RacingStore()
    app = make_app(store, max_size=1000)
    app.testing = False
    client = app.test_client()
    client.get("/set/a/1")
    store.calls.clear()
    store.refusals = 100
    with caplog.at_level(logging.WARNING, "flask_serversession"):
        response = client.get("/set/b/2")
    assert response.status_code == 503 and "Set-Cookie" not in response.headers
    assert store.calls == ["patch", "load"] * 3
    assert "refused as too large 3 times" in caplog.text
    store.refusals = 0
    assert client.get("/dump").json == {"a": "'1'"}


def test_login_that_would_take_a_grown_session_over_the_limit_moves_nothing() -> None:
    """A request read the session, another one grew it meanwhile, then the first one sets a
    value and logs in (a new ID): the move is refused as too large, SessionTooLarge names the
    largest key, and the session stays under its old ID, as the other request left it."""
    store = RacingStore()
    app = make_app(store, max_size=1000)

    @app.get("/checkout")
    def checkout() -> str:
        session.get("a")  # loaded; then the other request writes
        session["order"] = "o" * 300
        assert isinstance(session, ServerSideSession)
        session.login("alice")
        return "ok"

    client = app.test_client()
    client.get("/set/a/" + "x" * 300)
    cookie = client.get_cookie("session")
    assert cookie is not None
    key = store_key(cookie.value.split(".")[0])

    def other_request() -> None:
        now = time.time()
        grow = Patch({"cart": '"' + "c" * 500 + '"'}, (), now, now + 3600)
        assert MemoryStore.patch(store, key, grow)

    store.after_load = other_request
    with pytest.raises(SessionTooLarge) as info:
        client.get("/checkout")
    assert info.value.largest[0][0] == "cart"
    after = client.get_cookie("session")
    assert after is not None and after.value == cookie.value
    record = store.load(key)
    assert record is not None and record.is_live(time.time()) and record.user_id is None
    assert sorted(record.values) == ["a", "cart"] and values_size(record.values) <= 1000


def test_without_secret_key_writes_fail_clearly() -> None:
    app = Flask(__name__)
    ServerSession(app, store="memory://")

    @app.get("/w")
    def write() -> str:
        session["x"] = 1
        return "ok"

    app.testing = True
    with pytest.raises(RuntimeError, match="secret key"):
        app.test_client().get("/w")


def test_cookie_attributes_follow_flask_config() -> None:
    app = Flask(__name__)
    app.secret_key = "k"
    app.config.update(
        SESSION_COOKIE_NAME="__Host-sid",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PARTITIONED=True,
    )
    ServerSession(app, store="memory://")

    @app.get("/w")
    def write() -> str:
        session.permanent = True
        session["x"] = 1
        return "ok"

    header = app.test_client().get("/w", base_url="https://example.test").headers["Set-Cookie"]
    assert header.startswith("__Host-sid=")
    for part in ("Secure", "HttpOnly", "Path=/", "SameSite=Strict", "Partitioned", "Expires="):
        assert part in header
    assert "Domain" not in header


def test_planted_pickle_is_reported_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, events: list[tuple[str, dict[str, Any]]]
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")
    cookie = client.get_cookie("session")
    assert cookie is not None
    key = store_key(cookie.value.split(".")[0])
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Exploit()).decode("latin-1")
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute(
        "UPDATE serversession SET data = json_object('user', ?) WHERE key = ?", (payload, key)
    )
    with caplog.at_level(logging.ERROR, "flask_serversession"):
        assert client.get("/get/user").text == "None"
    assert not marker.exists()
    assert "unreadable" in caplog.text
    assert ("rejected", {"reason": "corrupt"}) in events
    assert store.load(key) is None


def test_store_contract_is_abstract() -> None:
    with pytest.raises(TypeError):
        Store()  # type: ignore[abstract]


def test_current_session_is_typed_access_to_flask_session() -> None:
    from flask_serversession import ServerSideSession, current_session

    app = make_app(MemoryStore())

    @app.get("/typed")
    def typed() -> str:
        current = current_session()
        assert isinstance(current, ServerSideSession)
        current.login("erin")
        return "ok"

    client = app.test_client()
    assert client.get("/typed").text == "ok"
    assert client.get("/whoami").json["user"] == "erin"  # type: ignore[index]
    plain = Flask(__name__)
    plain.secret_key = "k"
    with plain.test_request_context("/"), pytest.raises(RuntimeError, match="server-side"):
        current_session()


@settings(max_examples=300, deadline=None)
@given(
    serialized=st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=6),
    max_size=st.integers(1, 200),
    max_keys=st.integers(1, 7),
)
def test_the_size_check_refuses_exactly_what_is_over_a_limit(
    serialized: dict[str, str], max_size: int, max_keys: int
) -> None:
    """Whatever shortcut the check takes, it refuses exactly the sessions over a limit, counted
    in UTF-8 bytes (up to 4 a character)."""
    app = make_app(MemoryStore(), max_size=max_size, max_keys=max_keys)
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    over_size = values_size(serialized) > max_size
    over_keys = len(serialized) > max_keys
    if over_size or over_keys:
        with pytest.raises(SessionTooLarge if over_size else SessionTooManyKeys):
            interface._check_size(serialized)
    else:
        interface._check_size(serialized)
