"""The library as a browser sees it: a real threaded HTTP server, on the memory and SQLite stores.

Every test serves a Flask app with :func:`http_server.serve` and talks to it over TCP, so the
request cycle, the cookies and the concurrency are the real ones, not the test client's.
Overlapping requests are ordered with barriers and events inside the views, never with sleeps.
"""

from __future__ import annotations

import json
import random
import string
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request, session
from http_server import Browser, InThread, in_parallel, serve
from store_urls import STORE_KINDS, fresh_store_url

from flask_serversession import ServerSession, ServerSideSession, Store, store_from_url
from flask_serversession.ids import CookieSigner, new_session_id, store_key
from flask_serversession.signals import session_rejected
from flask_serversession.stores.sqlite import SQLiteStore

SECRET = "http-test-secret-A"
COOKIE = "session"
#: Seconds a view waits for its partner before failing the request.
WAIT = 10.0


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = store_from_url(fresh_store_url(request, request.param, tmp_path))
    yield opened
    opened.close()


@contextmanager
def peer_store(store: Store) -> Iterator[Store]:
    """A store another process would open on the same data: for SQLite a new connection pool
    on the same file; for memory (one process only) the same object."""
    if isinstance(store, SQLiteStore):
        peer = SQLiteStore(store.path)
        try:
            yield peer
        finally:
            peer.close()
    else:
        yield store


# The tutorial's views, verbatim in behaviour and texts.


def _setsession() -> str:
    session["Username"] = "Admin"
    return "The session has been Set"


def _getsession() -> str:
    if "Username" in session:
        username = session["Username"]
        return f"Welcome {username}"
    return "Welcome Anonymous"


def _popsession() -> str:
    session.pop("Username", None)
    return "Session Deleted"


# Generic helpers.


def _untouched() -> str:
    return "no session here"


def _read() -> Response:
    return Response(json.dumps(dict(session), sort_keys=True), mimetype="application/json")


def _seed() -> str:
    values = request.get_json()
    assert isinstance(values, dict)
    if values.pop("_permanent", False):
        session.permanent = True
    for key, value in values.items():
        session[key] = value
    return "seeded"


def _put(key: str) -> str:
    session[key] = request.get_data(as_text=True)
    return "stored"


def _get(key: str) -> str:
    value = session.get(key, "")
    assert isinstance(value, str)
    return value


def _logout() -> str:
    server_session().destroy()
    return "logged out"


def _regenerate() -> str:
    server_session().regenerate()
    return "regenerated"


#: The views of :func:`make_app`: rule, endpoint, view, methods.
_VIEWS: tuple[tuple[str, str, Callable[..., Any], list[str]], ...] = (
    ("/setsession", "setsession", _setsession, ["GET"]),
    ("/getsession", "getsession", _getsession, ["GET"]),
    ("/popsession", "popsession", _popsession, ["GET"]),
    ("/untouched", "untouched", _untouched, ["GET"]),
    ("/read", "read", _read, ["GET"]),
    ("/seed", "seed", _seed, ["POST"]),
    ("/put/<key>", "put", _put, ["POST"]),
    ("/get/<key>", "get", _get, ["GET"]),
    ("/logout", "logout", _logout, ["GET"]),
    ("/regenerate", "regenerate", _regenerate, ["GET"]),
)


def make_app(
    store: Store, *, secret_key: str = SECRET, fallbacks: list[str] | None = None, **config: Any
) -> Flask:
    """The tutorial's app, plus a few generic views the tests share."""
    app = Flask(__name__)
    app.secret_key = secret_key
    if fallbacks is not None:
        app.config["SECRET_KEY_FALLBACKS"] = fallbacks
    app.config.update(config)
    ServerSession(app, store=store)
    for rule, endpoint, view, methods in _VIEWS:
        app.add_url_rule(rule, endpoint, view, methods=methods)
    return app


def server_session() -> ServerSideSession:
    """``flask.session``, typed as what it is here."""
    assert isinstance(session, ServerSideSession)
    return session


def session_id_of(cookie_value: str) -> str:
    """The ID in a cookie value ``ID.SIGNATURE``."""
    return cookie_value.split(".", 1)[0]


def read(browser: Browser, cookie: str | None = None) -> dict[str, Any]:
    """The session's values as the server sees them, with the jar's cookie or ``cookie``."""
    cookies = None if cookie is None else {COOKIE: cookie}
    response = browser.get("/read", cookies=cookies, remember=False)
    assert response.status == 200, response.text
    data = json.loads(response.text)
    assert isinstance(data, dict)
    return data


def seed(browser: Browser, values: dict[str, Any]) -> str:
    """Create a new session holding ``values``; return its cookie value (also kept in the jar)."""
    body = json.dumps(values).encode()
    response = browser.post("/seed", body, content_type="application/json", cookies={})
    assert response.status == 200, response.text
    cookie = response.set_cookie(COOKIE)
    assert cookie is not None and not cookie.expired, response.headers
    return cookie.value


def no_live_session(store: Store, key: str) -> bool:
    """Nothing live under ``key``: absent, or a tombstone left by a logout or regeneration."""
    record = store.load(key)
    return record is None or (record.ended and not record.values)


def wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise RuntimeError(f"timed out waiting for {what}")


@contextmanager
def rejected_reasons(app: Flask) -> Iterator[list[str]]:
    """Collect the ``reason`` of every ``session_rejected`` sent by ``app`` (signals are
    process-wide: other apps' signals are filtered out by sender)."""
    reasons: list[str] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        reasons.append(kwargs["reason"])

    with session_rejected.connected_to(receiver, sender=app):
        yield reasons


# -- 1. the tutorial -----------------------------------------------------------------------------


def test_tutorial_flow(store: Store) -> None:
    with serve(make_app(store)) as url:
        browser = Browser(url)
        assert browser.get("/getsession").text == "Welcome Anonymous"

        response = browser.get("/setsession")
        assert response.status == 200
        assert response.text == "The session has been Set"
        cookie = response.set_cookie(COOKIE)
        assert cookie is not None, response.headers
        assert cookie.has("HttpOnly")
        assert cookie.get("SameSite") == "Lax"
        assert cookie.get("Path") == "/"
        assert not cookie.expired
        assert "Admin" not in cookie.value
        assert len(cookie.value) < 100
        # The data is on the server, under a hash of the ID, not the ID itself.
        old_id = session_id_of(cookie.value)
        assert store.load(old_id) is None
        assert store.load(store_key(old_id)) is not None

        assert browser.get("/getsession").text == "Welcome Admin"
        response = browser.get("/popsession")
        assert response.text == "Session Deleted"
        assert browser.get("/getsession").text == "Welcome Anonymous"
        # Popping the last key deleted the session on the server and in the browser.
        assert no_live_session(store, store_key(old_id))
        assert COOKIE not in browser.jar
        assert browser.get("/getsession", cookies={COOKIE: cookie.value}).text == (
            "Welcome Anonymous"
        )


# -- 2. forged cookies ---------------------------------------------------------------------------


def _flip_signature_char(value: str) -> str:
    """Change one character in the middle of the signature (the last one may only carry
    padding bits, which decode to the same bytes)."""
    session_id, signature = value.split(".", 1)
    i = len(signature) // 2
    replacement = "A" if signature[i] != "A" else "B"
    return f"{session_id}.{signature[:i]}{replacement}{signature[i + 1 :]}"


FORGERIES: dict[str, tuple[Callable[[str], str], str | None]] = {
    # name: (make a forged value from a real cookie value, expected rejection reason)
    "random": (lambda real: f"{new_session_id()}.{new_session_id()}", "bad-signature"),
    "flipped-signature": (_flip_signature_char, "bad-signature"),
    "other-key": (
        lambda real: CookieSigner(["other-key"]).sign(session_id_of(real)),
        "bad-signature",
    ),
    "malformed-id": (lambda real: CookieSigner([SECRET]).sign("not-an-id"), "malformed"),
    "malformed-id-too-short": (
        lambda real: CookieSigner([SECRET]).sign(session_id_of(real)[:-1]),
        "malformed",
    ),
    # Correctly signed, right shape, but the store has never heard of it: never adopted.
    "unknown-id": (lambda real: CookieSigner([SECRET]).sign(new_session_id()), None),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_cookie_is_anonymous(store: Store, forgery: str) -> None:
    make_forged, reason = FORGERIES[forgery]
    app = make_app(store)
    with serve(app) as url:
        browser = Browser(url)
        real = browser.get("/setsession").set_cookie(COOKIE)
        assert real is not None
        forged = make_forged(real.value)
        assert forged != real.value

        with rejected_reasons(app) as reasons:
            response = browser.get("/getsession", cookies={COOKIE: forged}, remember=False)
        assert response.status == 200
        assert response.text == "Welcome Anonymous"
        assert response.set_cookie(COOKIE) is None
        assert reasons == ([reason] if reason is not None else [])

        # A write with the forged cookie starts a new session with a new ID...
        with rejected_reasons(app) as reasons:
            response = browser.post("/put/marker", b"forged", cookies={COOKIE: forged})
        assert response.status == 200
        assert reasons == ([reason] if reason is not None else [])
        new = response.set_cookie(COOKIE)
        assert new is not None, "a write must create a session and send its cookie"
        assert not new.expired
        assert session_id_of(new.value) not in (session_id_of(forged), session_id_of(real.value))
        assert read(browser, new.value) == {"marker": "forged"}
        # ... and never touches the real session whose ID the forgery may carry.
        assert read(browser, real.value) == {"Username": "Admin"}
        if session_id_of(forged) != session_id_of(real.value):
            assert store.load(store_key(session_id_of(forged))) is None


def test_write_with_a_cookie_the_server_no_longer_knows_starts_a_new_session(store: Store) -> None:
    """The tutorial after the session ended on the server (idle expiry, cleanup, an admin's
    revoke): the browser still sends the old, validly signed cookie. /setsession only assigns;
    its value must land in a new session with a new ID, not vanish."""
    with serve(make_app(store)) as url:
        browser = Browser(url)
        old = browser.get("/setsession").set_cookie(COOKIE)
        assert old is not None
        store.delete(store_key(session_id_of(old.value)))  # ended on the server
        assert browser.get("/getsession").text == "Welcome Anonymous"

        response = browser.get("/setsession")
        assert response.text == "The session has been Set"
        new = response.set_cookie(COOKIE)
        assert new is not None, "the write was dropped: no new session, no cookie"
        assert session_id_of(new.value) != session_id_of(old.value)
        assert browser.get("/getsession").text == "Welcome Admin"
        assert no_live_session(store, store_key(session_id_of(old.value)))


# -- 3. key rotation -----------------------------------------------------------------------------


def test_cookie_survives_key_rotation(store: Store) -> None:
    with peer_store(store) as other:
        old_app = make_app(store, secret_key="key-A")
        rotated = make_app(other, secret_key="key-B", fallbacks=["key-A"])
        forgotten = make_app(other, secret_key="key-B")
        with serve(old_app) as old_url, serve(rotated) as new_url, serve(forgotten) as bare_url:
            cookie = Browser(old_url).get("/setsession").set_cookie(COOKIE)
            assert cookie is not None
            sent = {COOKIE: cookie.value}

            browser = Browser(new_url)
            assert browser.get("/getsession", cookies=sent).text == "Welcome Admin"
            # Still the same session: a change under the new key is seen under the old one.
            assert browser.post("/put/after", b"rotation", cookies=sent).status == 200
            assert read(Browser(old_url), cookie.value) == {
                "Username": "Admin",
                "after": "rotation",
            }
            # Without the fallback the cookie is refused: the test above can fail.
            with rejected_reasons(forgotten) as reasons:
                response = Browser(bare_url).get("/getsession", cookies=sent)
            assert response.text == "Welcome Anonymous"
            assert reasons == ["bad-signature"]


# -- 4. no lost updates --------------------------------------------------------------------------

TRIALS = 200


@pytest.mark.slow
def test_overlapping_writes_of_different_keys_both_land(store: Store) -> None:
    app = make_app(store)
    barrier: list[threading.Barrier] = []

    @app.route("/race/<key>")
    def race(key: str) -> str:
        trial = int(request.args["trial"])
        before = session.get(key)  # loads the session
        barrier[-1].wait(WAIT)  # both requests have loaded before either writes
        session[key] = trial
        return f"{key}: {before} -> {trial}"

    lost: list[str] = []
    with serve(app) as url:
        browser = Browser(url)
        for trial in range(TRIALS):
            cookie = seed(browser, {"trial": trial})
            barrier.append(threading.Barrier(2))
            sent = {COOKIE: cookie}
            responses = in_parallel(
                partial(browser.get, f"/race/a?trial={trial}", cookies=sent, remember=False),
                partial(browser.get, f"/race/b?trial={trial}", cookies=sent, remember=False),
            )
            for response in responses:
                assert response.status == 200, response.text
                assert response.text.endswith(f"None -> {trial}"), response.text
                assert response.set_cookie(COOKIE) is None
            data = read(browser, cookie)
            if data.get("a") != trial or data.get("b") != trial:
                lost.append(f"trial {trial}: {data}")
    assert not lost, f"{len(lost)} of {TRIALS} trials lost an update, e.g. {lost[:3]}"


# -- 5. a slow reader does not undo a write ------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested-list"])
def test_slow_read_only_request_does_not_undo_a_write(store: Store, nested: bool) -> None:
    app = make_app(store)
    reader_loaded = threading.Event()
    writer_done = threading.Event()

    @app.route("/slow-read")
    def slow_read() -> str:
        seen = session.get("x")
        total = sum(session["cart"]) if nested else 0  # a nested read, not a change
        reader_loaded.set()
        wait(writer_done, "the writer")
        return f"{seen} {total} {len(session['cart']) if nested else 0}"

    @app.route("/write")
    def write() -> str:
        session["x"] = "new"
        if nested:
            session["cart"].append(4)
        return "written"

    with serve(app) as url:
        browser = Browser(url)
        cookie = seed(browser, {"x": "old", "cart": [1, 2, 3]})
        reader = InThread(partial(browser.get, "/slow-read", cookies={COOKIE: cookie}))
        try:
            wait(reader_loaded, "the reader to load")
            written = browser.get("/write", cookies={COOKIE: cookie}, remember=False)
        finally:
            writer_done.set()
        response = reader.result()
        assert written.status == 200, written.text
        assert response.status == 200, response.text
        assert response.text == ("old 6 3" if nested else "old 0 0")
        assert response.set_cookie(COOKIE) is None

        data = read(browser, cookie)
        assert data["x"] == "new"
        assert data["cart"] == ([1, 2, 3, 4] if nested else [1, 2, 3])


# -- 6. no resurrection --------------------------------------------------------------------------

IN_FLIGHT = ["read-modify", "assign-only", "read-only-permanent"]


@pytest.mark.parametrize("ending", ["destroy", "regenerate"])
@pytest.mark.parametrize("in_flight", IN_FLIGHT)
def test_request_in_flight_does_not_bring_the_old_session_back(
    store: Store, ending: str, in_flight: str
) -> None:
    """S starts with the session's cookie and (except assign-only) loads it; meanwhile L logs out
    (destroy) or logs in (regenerate) and completes; then S finishes. S must write nothing
    under the old ID and send no cookie: neither the data nor the old cookie comes back.

    read-only-permanent: S only reads a permanent session whose idle expiry is due for a
    refresh (a tiny SESSION_TOUCH_INTERVAL makes every load refresh it); the refresh must not
    re-send the old cookie, which would overwrite the browser's new cookie (regenerate) or
    restore the deleted one (destroy).
    """
    app = make_app(store, SESSION_TOUCH_INTERVAL=1e-6)
    started = threading.Event()
    proceed = threading.Event()

    @app.route("/in-flight")
    def in_flight_view() -> str:
        if in_flight != "assign-only":
            assert session["Username"] == "Admin"  # loads
        started.set()
        wait(proceed, "the logout/login to complete")
        if in_flight == "read-modify":
            session["cart"].append(4)
            session["z"] = 1
        elif in_flight == "assign-only":
            session["k"] = 1
        else:
            assert session["cart"] == [1, 2, 3]
        return "done"

    seeded = {"Username": "Admin", "cart": [1, 2, 3]}
    with serve(app) as url:
        browser = Browser(url)
        old = seed(browser, {**seeded, "_permanent": in_flight == "read-only-permanent"})
        old_key = store_key(session_id_of(old))

        slow = InThread(partial(browser.get, "/in-flight", cookies={COOKIE: old}, remember=False))
        try:
            wait(started, "the in-flight request to start")
            path = "/logout" if ending == "destroy" else "/regenerate"
            ending_response = browser.get(path, cookies={COOKIE: old})
        finally:
            proceed.set()
        response = slow.result()
        assert ending_response.status == 200, ending_response.text
        ended = ending_response.set_cookie(COOKIE)
        assert ended is not None
        if ending == "destroy":
            assert ended.expired
        else:
            assert not ended.expired and session_id_of(ended.value) != session_id_of(old)
        assert response.status == 200, response.text

        assert response.set_cookie(COOKIE) is None, (
            f"the in-flight request sent a session cookie after {ending}:"
            f" {response.header_values('Set-Cookie')}"
        )
        assert no_live_session(store, old_key), "the old session was written again"
        assert read(browser, old) == {}
        if ending == "regenerate":
            new_data = read(browser, ended.value)
            assert new_data["Username"] == "Admin"
            assert new_data["cart"][:3] == [1, 2, 3]
        else:
            assert browser.jar == {}


# -- 7. more than a cookie could hold ------------------------------------------------------------


@pytest.mark.parametrize("size", [10 * 1024, 200 * 1024], ids=["10KB", "200KB"])
def test_large_value_round_trips(store: Store, size: int) -> None:
    value = "".join(random.Random(size).choices(string.ascii_letters + string.digits, k=size))
    with serve(make_app(store)) as url:
        browser = Browser(url)
        response = browser.post("/put/big", value.encode())
        assert response.status == 200, response.text
        cookie = response.set_cookie(COOKIE)
        assert cookie is not None and len(cookie.value) < 100
        got = browser.get("/get/big")
        assert got.status == 200
        assert got.text == value


def test_max_size_holds_for_views_that_only_assign(store: Store) -> None:
    """SESSION_MAX_SIZE over HTTP: POST /put only assigns (one patch, no load). The third value
    would take the session past the limit: that request fails (500: the app's error, as for any
    value that cannot be stored), the session keeps what it had, and it still works."""
    with serve(make_app(store, SESSION_MAX_SIZE=1000)) as url:
        browser = Browser(url)
        statuses = [browser.post(f"/put/{key}", b"x" * 400).status for key in "abc"]
        assert statuses == [200, 200, 500]
        assert sorted(read(browser)) == ["a", "b"]
        assert browser.post("/put/a", b"y" * 10).status == 200  # shrinking is fine
        assert browser.post("/put/c", b"x" * 400).status == 200  # and now it fits
        assert sorted(read(browser)) == ["a", "b", "c"]


# -- 8. headers for visitors who store nothing ---------------------------------------------------


def test_untouched_and_read_only_requests_headers(store: Store) -> None:
    with serve(make_app(store)) as url:
        browser = Browser(url)
        response = browser.get("/untouched")
        assert response.status == 200
        assert response.set_cookies() == []
        assert "cookie" not in response.vary

        response = browser.get("/getsession")
        assert response.text == "Welcome Anonymous"
        assert response.set_cookies() == []
        assert "cookie" in response.vary

        # The same with a live session's cookie.
        browser.get("/setsession")
        assert COOKIE in browser.jar
        response = browser.get("/untouched")
        assert response.set_cookies() == []
        assert "cookie" not in response.vary
        response = browser.get("/getsession")
        assert response.text == "Welcome Admin"
        assert response.set_cookies() == []
        assert "cookie" in response.vary
