"""The request cycle on a store, as a client sees it: tokens, round trips, expiry, logout.

Each test runs over both transports (the ``transport`` fixture): a browser's cookie, and an API
client's header (a :class:`~.header_client.HeaderClient`, no cookie jar). ``_cookie`` reads the
token the client holds and ``_given`` what a response said about it, whichever carried it.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient

from ..ids import new_session_id, store_key
from ..serialization import loads_value
from ..stores import Store
from .app import _cookie, _given, _in_parallel, _interface, _reads_from
from .contract import _ended
from .doubles import HOUR, T0, Clock, CountingStore


class AppBehaviour:
    """The request-cycle ``test_app_*`` tests of :class:`StoreConformance`."""

    def test_app_round_trips_per_request(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        client.get("/set/user/alice")  # creates the session
        budget = {"/none": 0, "/get/user": 1, "/set/x/1": 1, "/rw/y/2": 2}
        for url, expected in budget.items():
            counting.calls.clear()
            response = client.get(url)
            assert response.status_code == 200
            assert counting.total == expected, (url, dict(counting.calls))

    def test_app_untouched_request_has_no_cookie_and_no_vary(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        response = client.get("/none")
        assert "Set-Cookie" not in response.headers and _given(response) is None
        assert "Cookie" not in response.vary and "Authorization" not in response.vary
        assert counting.total == 0

    def test_app_visitor_who_stores_nothing_gets_nothing(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        response = client.get("/get/user")
        assert response.text == "None"
        assert "Set-Cookie" not in response.headers and _given(response) is None
        assert _reads_from(client) in response.vary
        assert counting.total == 0  # no cookie: nothing to load

    def test_app_session_round_trip_and_cookie(
        self, client: FlaskClient, store: Store, transport: str
    ) -> None:
        response = client.get("/set/user/alice")
        if transport == "cookie":
            cookie = response.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
            assert "Expires" not in cookie  # not permanent: a browser-session cookie
        else:
            assert "Set-Cookie" not in response.headers  # the header transport sets no cookie
        value = _cookie(client)
        assert value is not None and "alice" not in value and _given(response) == value
        session_id = value.split(".")[0]
        assert len(session_id) == 43  # 256 bits, URL-safe base64
        record = store.load(store_key(session_id))
        assert record is not None and loads_value(record.values["user"]) == "alice"
        assert store.load(session_id) is None  # the store never sees the ID itself
        assert client.get("/get/user").text == "'alice'"

    def test_app_nested_change_saved_without_modified(self, client: FlaskClient) -> None:
        with client.session_transaction() as sess:
            sess["cart"] = [1, 2]
        client.get("/append/cart/3")
        assert client.get("/get/cart").text == "[1, 2, '3']"

    def test_app_unchanged_read_writes_nothing(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        with client.session_transaction() as sess:
            sess["cart"] = [1, 2, {"a": {1, 2}}]
            sess["user"] = "alice"
        counting.calls.clear()
        response = client.get("/dump")
        assert response.status_code == 200
        assert counting.calls == {"load": 1}
        assert "Set-Cookie" not in response.headers

    def test_app_assign_only_merges_with_stored(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        client.get("/set/a/1")
        counting.calls.clear()
        client.get("/set/b/2")
        assert counting.calls == {"patch": 1}
        assert client.get("/dump").json == {"a": "'1'", "b": "'2'"}

    def test_app_pop_last_key_removes_session(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        response = client.get("/pop/user")
        assert response.text == "'alice'"
        assert _given(response) == "" and _cookie(client) is None  # cookie deleted
        assert _ended(store, store_key(value.split(".")[0]))

    def test_app_regenerate(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        old = _cookie(client)
        response = client.get("/regenerate")
        new = _cookie(client)
        assert response.status_code == 200 and new is not None and new != old
        assert _given(response) == new
        assert client.get("/get/user").text == "'alice'"
        assert old is not None
        assert _ended(store, store_key(old.split(".")[0]))
        client.set_cookie("session", old)
        assert client.get("/get/user").text == "None"

    def test_app_destroy(self, client: FlaskClient, store: Store, clock: Clock) -> None:
        client.get("/set/user/alice")
        old = _cookie(client)
        response = client.get("/destroy")
        assert _given(response) == ""  # the cookie expired, or the header emptied
        assert _cookie(client) is None
        assert old is not None
        assert _ended(store, store_key(old.split(".")[0]))
        client.set_cookie("session", old)
        assert client.get("/get/user").text == "None"
        client.set_cookie("session", old)
        response = client.get("/rw/user/bob")  # in flight during the logout, as it were
        assert "Set-Cookie" not in response.headers and _given(response) in (None, "")
        assert _ended(store, store_key(old.split(".")[0]))
        clock.advance(601)  # the tombstone's time is over: the old ID is merely unknown now
        client.get("/rw/user/bob")  # a read, then a write: a new session with a new ID
        assert _cookie(client) not in (None, old)

    def test_app_assign_only_on_ended_session_saves_nothing(
        self, client: FlaskClient, store: Store
    ) -> None:
        """A request still carrying the ID of a session ended on purpose (logout) writes
        nothing and sends no cookie, so the logout is never undone."""
        client.get("/set/user/alice")
        old = _cookie(client)
        client.get("/destroy")
        assert old is not None
        client.set_cookie("session", old)
        response = client.get("/set/user/bob")
        assert response.status_code == 200 and "Set-Cookie" not in response.headers
        assert _given(response) in (None, "")  # no new token: the header says it is over
        assert _ended(store, store_key(old.split(".")[0]))
        assert client.get("/get/user").text == "None"

    def test_app_ended_session_coming_back_later_starts_afresh(
        self, client: FlaskClient, clock: Clock, store: Store
    ) -> None:
        """A browser whose session was ended elsewhere (revoked, logged out on another tab)
        and that comes back later is not locked out by the tombstone: it gets a new session."""
        client.get("/set/user/alice")
        old = _cookie(client)
        assert old is not None
        other = client.application.test_client()
        other.set_cookie("session", old)
        other.get("/destroy")  # ended from elsewhere; this browser still holds the cookie
        assert _ended(store, store_key(old.split(".")[0]))
        clock.advance(10)
        assert client.get("/get/user").text == "None"
        client.set_cookie("session", old)  # (a header client was told it is over: it forgot)
        response = client.get("/rw/user/bob")
        assert _given(response) not in (None, "", old)
        assert _cookie(client) not in (None, old)
        assert client.get("/get/user").text == "'bob'"

    def test_app_assign_only_on_expired_session_starts_a_new_one(
        self, client: FlaskClient, clock: Clock, counting: CountingStore
    ) -> None:
        """A session that simply expired is not ended on purpose: an assignment made without
        reading lands in a new session, with a new ID."""
        client.get("/set/user/alice")
        old = _cookie(client)
        clock.advance(2 * HOUR)
        counting.calls.clear()
        response = client.get("/set/user/bob")
        assert counting.calls == {"patch": 1, "load": 1, "create": 1}
        new = _cookie(client)
        assert _given(response) == new and new not in (None, old)
        assert client.get("/get/user").text == "'bob'"

    def test_app_unknown_id_is_never_adopted(self, client: FlaskClient, app: Flask) -> None:
        chosen = new_session_id()
        signed = _interface(app)._get_signer(app)
        assert signed is not None
        client.set_cookie("session", signed.sign(chosen))  # valid signature, unknown to the store
        assert client.get("/get/user").text == "None"
        client.get("/rw/user/mallory")
        value = _cookie(client)
        assert value is not None and not value.startswith(chosen)

    def test_app_idle_timeout(self, client: FlaskClient, clock: Clock) -> None:
        client.get("/set/user/alice")
        clock.advance(HOUR - 1)
        assert client.get("/get/user").text == "'alice'"  # refreshes the idle expiry
        clock.advance(HOUR - 1)
        assert client.get("/get/user").text == "'alice'"
        clock.advance(HOUR + 1)
        assert client.get("/get/user").text == "None"

    def test_app_absolute_timeout(self, client: FlaskClient, clock: Clock) -> None:
        client.get("/set/user/alice")
        for _ in range(23):
            clock.advance(HOUR - 60)
            assert client.get("/rw/user/alice").text == "'alice'"
        clock.advance(2 * HOUR)  # past 24 h since creation, though active all along
        assert client.get("/get/user").text == "None"

    def test_app_touch_is_rate_limited(
        self, client: FlaskClient, clock: Clock, counting: CountingStore, store: Store
    ) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        key = store_key(value.split(".")[0])
        clock.advance(10)
        client.get("/get/user")
        record = store.load(key)
        assert record is not None and record.last_seen == T0  # within the touch interval
        clock.advance(120)
        counting.calls.clear()
        client.get("/get/user")
        assert counting.total == 1  # the touch rides on the load
        record = store.load(key)
        assert record is not None and record.last_seen == T0 + 130
        assert record.expires == T0 + 130 + HOUR

    def test_app_permanent_cookie(self, client: FlaskClient, clock: Clock, transport: str) -> None:
        """A permanent session's cookie lives until the session's absolute end, so it is sent
        only with a new ID or when the session becomes permanent; idleness is the server's.
        A header token has no lifetime on the client: becoming permanent sends nothing."""
        client.get("/set/user/alice")
        token = _cookie(client)
        response = client.get("/permanent")  # an existing session becomes permanent
        if transport == "cookie":
            cookie = client.get_cookie("session")
            assert cookie is not None and cookie.expires is not None
            assert cookie.expires.timestamp() == T0 + 24 * HOUR
            assert "Set-Cookie" in response.headers
        else:
            assert _given(response) is None and _cookie(client) == token
        clock.advance(120)
        response = client.get("/rw/user/bob")
        assert _given(response) is None  # a request never re-sends an old ID
        clock.advance(HOUR + 1)  # idle: over on the server though the cookie lives on
        assert _cookie(client) is not None
        assert client.get("/get/user").text == "None"

    def test_app_large_value(self, client: FlaskClient, app: Flask) -> None:
        big = "x" * 10_000

        @app.get("/big")
        def big_view() -> str:
            session["big"] = big
            return "ok"

        # routes must be added before the first request
        assert client.get("/big").text == "ok"
        assert client.get("/get/big").text == repr(big)

    def test_app_concurrent_requests_different_keys(self, app: Flask) -> None:
        """Two requests that read, then write different keys, interleaved: both land."""
        gate = threading.Barrier(2)

        @app.get("/slow/<k>/<v>")
        def slow(k: str, v: str) -> str:
            session.get("user")  # load first, like a real view
            gate.wait(timeout=10)  # both requests have loaded before either saves
            session[k] = v
            return "ok"

        client = app.test_client()
        client.get("/set/user/alice")
        cookie = _cookie(client)
        assert cookie is not None
        assert _in_parallel(app, cookie, "/slow/a/1", "/slow/b/2") == [200, 200]
        assert client.get("/dump").json == {"user": "'alice'", "a": "'1'", "b": "'2'"}

    def test_app_no_resurrection_after_destroy(self, app: Flask, store: Store) -> None:
        """A request that loaded the session before a logout saves nothing after it."""
        loaded, logged_out = threading.Event(), threading.Event()

        @app.get("/late-writer")
        def late_writer() -> str:
            session.get("user")
            loaded.set()
            logged_out.wait(timeout=10)
            session["late"] = "write"
            return "ok"

        client = app.test_client()
        client.get("/set/user/alice")
        cookie = _cookie(client)
        assert cookie is not None
        responses: list[Any] = []

        def late() -> None:
            other = app.test_client()
            other.set_cookie("session", cookie)
            responses.append(other.get("/late-writer"))

        thread = threading.Thread(target=late)
        thread.start()
        assert loaded.wait(timeout=10)
        client.get("/destroy")
        logged_out.set()
        thread.join(timeout=30)
        assert responses and "Set-Cookie" not in responses[0].headers
        assert _given(responses[0]) in (None, "")
        assert _ended(store, store_key(cookie.split(".")[0]))

    def test_app_store_sees_only_hashed_keys(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        session_id = value.split(".")[0]
        assert store.load(session_id) is None
        assert store.load(store_key(session_id)) is not None
