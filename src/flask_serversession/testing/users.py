"""Logged-in sessions on a store, through the app: login, revocation, user ids."""

from __future__ import annotations

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from ..errors import InvalidUserId, SessionDataError, UnsupportedOperation
from ..extension import ServerSession
from ..ids import store_key
from ..session import ServerSideSession
from ..stores import Store
from .app import _cookie, _given, _interface, make_app
from .doubles import T0, Clock, CountingStore


class AppUsers:
    """The ``test_app_*`` tests of :class:`StoreConformance` on logins and revocation."""

    def test_app_login_binds_user_with_new_id(
        self, client: FlaskClient, app: Flask, clock: Clock
    ) -> None:
        client.get("/set/cart/x")
        before = _cookie(client)
        client.get("/login/alice")
        after = _cookie(client)
        assert after is not None and after != before
        who = client.get("/whoami").json
        assert who is not None and who["user"] == "alice" and who["auth"] == T0
        assert client.get("/get/cart").text == "'x'"  # data kept across the new ID
        manager = ServerSession.manager(app)
        if not manager.store.capabilities.by_user:
            with pytest.raises(UnsupportedOperation):
                manager.sessions_of("alice")
            return
        devices = manager.sessions_of("alice")
        assert [device.handle for device in devices] == [who["handle"]]
        assert devices[0].authenticated_at is not None
        assert devices[0].ip is None  # SESSION_RECORD_CLIENT is off by default
        client.get("/logout")
        assert manager.sessions_of("alice") == []
        assert client.get("/whoami").json == {"user": None, "handle": None, "auth": None}

    def test_app_anonymous_sessions_idle_out_sooner(
        self, store: Store, clock: Clock, transport: str
    ) -> None:
        """SESSION_ANONYMOUS_IDLE_TIMEOUT: a visitor's session (bound to no user) ends after
        its own, shorter idle time, whether last written by a read-and-write or an assign-only
        request, and leaves the store then; a logged-in one keeps the idle timeout."""
        app = make_app(store, transport=transport, idle_timeout=3600, anonymous_idle_timeout=600)
        _interface(app).clock = clock
        visitor, assigner, user = app.test_client(), app.test_client(), app.test_client()
        visitor.get("/rw/csrf/t1")
        assigner.get("/set/csrf/t2")
        assigner.get("/set/csrf/t3")  # assign-only: stored without knowing the binding
        user.get("/login/carol")
        user.get("/set/csrf/t4")
        clock.advance(590)  # read within the anonymous timeout: touched, still there
        assert [c.get("/get/csrf").text for c in (visitor, user)] == ["'t1'", "'t4'"]
        key = store_key((_cookie(visitor) or "").split(".")[0])
        record = store.load(key)
        assert record is not None and record.expires == clock() + 600
        clock.advance(601)
        assert [c.get("/get/csrf").text for c in (visitor, assigner, user)] == [
            "None",
            "None",
            "'t4'",
        ]
        record = store.load(key)
        assert record is None or not record.is_live(clock())  # gone from the store too

    def test_app_revoke_and_log_out_everywhere_else(self, app: Flask, clock: Clock) -> None:
        manager = ServerSession.manager(app)
        if not manager.store.capabilities.by_user:
            with pytest.raises(UnsupportedOperation):
                manager.revoke_user("bob")
            return
        devices = [app.test_client() for _ in range(3)]
        for n, device in enumerate(devices):
            clock.advance(1)
            device.get("/login/bob")
            device.get(f"/set/device/{n}")
        handles = [device.get("/whoami").json["handle"] for device in devices]  # type: ignore[index]
        listed = manager.sessions_of("bob")
        assert [info.handle for info in listed] == handles[::-1]  # most recently used first
        assert manager.revoke(handles[0])
        assert not manager.revoke(handles[0])  # already ended
        assert devices[0].get("/get/device").text == "None"  # on its very next request
        assert devices[2].get("/logout-others").text == "1"
        assert devices[1].get("/get/device").text == "None"
        assert devices[2].get("/get/device").text == "'2'"
        assert [info.handle for info in manager.sessions_of("bob")] == [handles[2]]
        with pytest.raises(ValueError):
            manager.revoke("not a handle")

    def test_app_login_after_revocation_starts_a_new_session(
        self, client: FlaskClient, app: Flask
    ) -> None:
        """Right after its session was revoked, a browser that logs in again gets a new
        session: an explicit login is never a resurrection."""
        client.get("/login/dave")
        handle = client.get("/whoami").json["handle"]  # type: ignore[index]
        assert ServerSession.manager(app).revoke(handle)
        client.get("/login/dave")  # within the in-flight grace: still a fresh session
        who = client.get("/whoami").json
        assert who is not None and who["user"] == "dave" and who["handle"] != handle

    def test_app_logged_in_session_without_values_stays(self, client: FlaskClient) -> None:
        """A session that holds only its user binding is not "empty": reading it keeps it."""
        client.get("/login/carol")
        for _ in range(2):
            response = client.get("/whoami")
            assert response.json is not None and response.json["user"] == "carol"
            assert "Set-Cookie" not in response.headers and _given(response) is None

    @pytest.mark.parametrize(
        ("user_id", "rule"),
        [
            ("", "empty"),
            ("a\x00b", "control character"),
            ("line\nbreak", "control character"),
            ("x" * 256, "255 characters"),
            ("\ud800", "surrogate"),
        ],
    )
    def test_app_login_refuses_a_user_id_no_store_can_keep(
        self, app: Flask, store: Store, user_id: str, rule: str
    ) -> None:
        """A user id every store can index is 1 to 255 characters with no control character
        and no lone surrogate; any other is refused by ``login()`` itself, naming the rule,
        before anything is written (not a 503 from the store at the end of the request)."""
        counting = CountingStore(store)
        _interface(app).store = counting

        @app.get("/login-as")
        def login_as() -> tuple[str, int]:
            assert isinstance(session, ServerSideSession)
            try:
                session.login(user_id)
            except SessionDataError as exc:
                return str(exc), 400
            return "logged in", 200

        response = app.test_client().get("/login-as")
        assert response.status_code == 400, response.text
        assert rule in response.text
        assert "Set-Cookie" not in response.headers and _given(response) is None
        manager = ServerSession.manager(app)
        manager.store = counting
        for look_up in (manager.sessions_of, manager.revoke_user):
            with pytest.raises(InvalidUserId, match=rule):
                look_up(user_id)
        assert sum(counting.calls.values()) == 0

    @pytest.mark.parametrize("user_id", ["x" * 255, "ü" * 255, "🙂" * 255, "user@example.com"])
    def test_app_login_keeps_every_valid_user_id(
        self, client: FlaskClient, app: Flask, user_id: str
    ) -> None:
        """The longest and widest user ids the rule allows are bound and listed on every
        store, byte for byte."""

        @app.get("/login-as")
        def login_as() -> str:
            assert isinstance(session, ServerSideSession)
            session.login(user_id)
            return "logged in"

        assert client.get("/login-as").status_code == 200
        assert client.get("/whoami").json["user"] == user_id  # type: ignore[index]
        manager = ServerSession.manager(app)
        if manager.store.capabilities.by_user:
            assert [info.user_id for info in manager.sessions_of(user_id)] == [user_id]
