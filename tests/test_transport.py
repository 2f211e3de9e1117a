"""SESSION_TRANSPORT: the token in a header for API clients, the cookie left as it was.

The behaviour suite runs over both transports on every store (``StoreConformance``); this file
covers what only the header has: its configuration, how a request header is read, the response
header's three cases, ``Vary`` and CORS, the "both" mode, and a cookie path left byte for byte
as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request, session
from flask.testing import FlaskClient
from rejections import rejections
from werkzeug.datastructures import EnvironHeaders

from flask_serversession import ConfigurationError, ServerSession
from flask_serversession.checks import check_config
from flask_serversession.ids import CookieSigner, new_session_id
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.testing import CountingStore, HeaderClient, make_app
from flask_serversession.testing.app import _interface


def _app(transport: str = "header", **options: Any) -> tuple[Flask, CountingStore]:
    store = CountingStore(MemoryStore())
    return make_app(store, transport=transport, **options), store


def _token(app: Flask) -> str:
    """A token for a session stored in ``app``'s store."""
    client = HeaderClient(app)
    client.get("/set/user/alice")
    assert client.token is not None
    return client.token


def _signed(app: Flask, session_id: str) -> str:
    secret = app.secret_key
    assert isinstance(secret, str)
    return CookieSigner([secret]).sign(session_id)


# -- configuration ---------------------------------------------------------------------------


def test_defaults_are_the_cookie_and_a_bearer_header() -> None:
    app = Flask(__name__)
    app.secret_key = "k"
    ServerSession(app, store="memory://")
    config = _interface(app).config
    assert config.transport == "cookie"
    assert (config.header_name, config.header_scheme) == ("Authorization", "Bearer")
    assert config.response_header == "X-Session-Token"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"transport": "headers"}, "SESSION_TRANSPORT"),
        ({"transport": True}, "SESSION_TRANSPORT"),
        ({"header_name": "X Token"}, "SESSION_HEADER_NAME"),
        ({"header_name": "Cookie"}, "SESSION_HEADER_NAME"),
        ({"header_name": 7}, "SESSION_HEADER_NAME"),
        ({"header_scheme": "Bearer token"}, "SESSION_HEADER_SCHEME"),
        ({"header_scheme": None, "response_header": "Set-Cookie"}, "SESSION_RESPONSE_HEADER"),
        ({"response_header": "X-Token:"}, "SESSION_RESPONSE_HEADER"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_key(options: dict[str, Any], key: str) -> None:
    app = Flask(__name__)
    with pytest.raises(ConfigurationError, match=key):
        ServerSession(app, store="memory://", **options)


def test_settings_are_read_from_app_config() -> None:
    app = Flask(__name__)
    app.config.update(
        SESSION_TRANSPORT="header",
        SESSION_HEADER_NAME="X-Session-Token",
        SESSION_HEADER_SCHEME="",
        SESSION_RESPONSE_HEADER="X-New-Token",
    )
    ServerSession(app, store="memory://")
    config = _interface(app).config
    assert (config.transport, config.header_name, config.header_scheme) == (
        "header",
        "X-Session-Token",
        "",
    )
    assert config.response_header == "X-New-Token"


# -- the response header ------------------------------------------------------------------------


def test_a_new_token_only_when_the_id_is_new_and_an_empty_one_when_it_ends() -> None:
    app, store = _app()
    client = HeaderClient(app)
    created = client.get("/set/user/alice")
    first = created.headers["X-Session-Token"]
    assert first and "Set-Cookie" not in created.headers and client.token == first
    for path in ("/get/user", "/set/x/1", "/rw/y/2", "/none"):
        assert "X-Session-Token" not in client.get(path).headers, path
    logged_in = client.get("/login/alice")
    second = logged_in.headers["X-Session-Token"]
    assert second not in ("", first) and client.token == second
    assert client.get("/whoami").json["user"] == "alice"  # type: ignore[index]
    ended = client.get("/logout")
    assert ended.headers["X-Session-Token"] == "" and client.token is None
    assert "Set-Cookie" not in ended.headers


def test_a_revoked_or_unknown_token_is_told_it_is_over() -> None:
    app, store = _app()
    token = _token(app)
    manager = ServerSession.manager(app)
    client = HeaderClient(app)
    client.token = token
    handle = client.get("/whoami").json["handle"]  # type: ignore[index]
    assert manager.revoke(handle)
    response = client.get("/get/user")
    assert response.text == "None" and response.headers["X-Session-Token"] == ""
    client.token = _signed(app, new_session_id())  # signed, but never stored
    response = client.get("/get/user")
    assert response.text == "None" and response.headers["X-Session-Token"] == ""


def test_the_header_is_parsed_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request header is read once, when the session is opened: telling a client that
    its token leads nowhere (after saving) reuses that reading, as the cookie's transport
    reuses Werkzeug's once-parsed ``request.cookies``."""
    app, _ = _app()
    token = _signed(app, new_session_id())  # signed, but never stored
    reads: list[str] = []
    getlist = EnvironHeaders.getlist

    def counted(self: EnvironHeaders, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.lower() == "authorization":
            reads.append(key)
        return getlist(self, key, *args, **kwargs)

    monkeypatch.setattr(EnvironHeaders, "getlist", counted)
    client = FlaskClient(app)
    response = client.get("/get/user", headers={"Authorization": f"Bearer {token}"})
    assert response.text == "None" and response.headers["X-Session-Token"] == ""
    assert len(reads) == 1


def test_a_dead_token_is_told_it_is_over_whatever_the_view_does_to_the_header() -> None:
    """What the session was opened from decides: a view that takes the header out of the
    WSGI environ does not keep the client from learning that its token leads nowhere."""
    app, _ = _app()
    token = _signed(app, new_session_id())  # signed, but never stored

    @app.get("/forget-header")
    def forget_header() -> str:
        value = repr(session.get("user"))
        del request.environ["HTTP_AUTHORIZATION"]
        return value

    client = FlaskClient(app)
    response = client.get("/forget-header", headers={"Authorization": f"Bearer {token}"})
    assert response.text == "None" and response.headers.get("X-Session-Token") == ""


def test_vary_names_the_header_read() -> None:
    app, _ = _app()
    client = HeaderClient(app)
    response = client.get("/set/user/alice")
    assert set(response.vary) == {"Authorization"}
    assert "Vary" not in client.get("/none").headers  # untouched: as with the cookie


def test_a_custom_header_with_a_bare_token() -> None:
    app, _ = _app(header_name="X-Session-Token", header_scheme="")
    client = HeaderClient(app)
    client.get("/set/user/alice")
    token = client.token
    assert token is not None
    plain = FlaskClient(app)
    assert plain.get("/get/user", headers={"X-Session-Token": token}).text == "'alice'"
    bearer = plain.get("/get/user", headers={"X-Session-Token": f"Bearer {token}"})
    assert bearer.text == "None"
    assert plain.get("/get/user", headers={"Authorization": f"Bearer {token}"}).text == "None"


def test_the_scheme_is_matched_case_insensitively_with_one_space() -> None:
    app, store = _app()
    token = _token(app)
    client = FlaskClient(app)
    for value in (f"Bearer {token}", f"bearer {token}", f"BEARER {token}"):
        assert client.get("/get/user", headers={"Authorization": value}).text == "'alice'"
    reasons = rejections(app)
    for value in (f"Bearer  {token}", f"Bearer\t{token}", f"Basic {token}", token):
        assert client.get("/get/user", headers={"Authorization": value}).text == "None", value
    assert reasons == ["malformed"] * 4


def test_no_token_is_no_rejection() -> None:
    """A client that holds no token (``Bearer`` alone, an empty header) gets a new session
    quietly; nothing reaches the store."""
    app, store = _app()
    reasons = rejections(app)
    client = FlaskClient(app)
    for value in ("", "Bearer", "Bearer "):
        response = client.get("/get/user", headers={"Authorization": value})
        assert response.text == "None" and "X-Session-Token" not in response.headers
    assert reasons == [] and store.total == 0


def test_cors_exposes_the_response_header() -> None:
    app, _ = _app()

    @app.after_request
    def allow(response: Any) -> Any:
        response.headers["Access-Control-Allow-Origin"] = "https://spa.example"
        if "exposed" in response.get_data(as_text=True):
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
        return response

    @app.get("/exposed")
    def exposed() -> str:
        session["x"] = 1
        return "exposed"

    client = HeaderClient(app)
    created = client.get("/set/user/alice")
    assert created.headers["Access-Control-Expose-Headers"] == "X-Session-Token"
    client.token = None
    merged = client.get("/exposed")
    assert merged.headers["Access-Control-Expose-Headers"] == "X-Request-Id, X-Session-Token"
    assert "Access-Control-Expose-Headers" not in client.get("/get/x").headers  # nothing sent


def test_without_cors_nothing_is_exposed() -> None:
    app, _ = _app()
    response = HeaderClient(app).get("/set/user/alice")
    assert "Access-Control-Expose-Headers" not in response.headers


# -- "header" never touches a cookie; "both" picks per request -------------------------------------


def test_header_mode_never_reads_or_sets_a_cookie() -> None:
    app, store = _app()
    client = app.test_client()  # a HeaderClient: make_app set it for "header"
    assert isinstance(client, HeaderClient)
    cookie_app, _ = _app("cookie")
    browser = cookie_app.test_client()
    browser.get("/set/user/alice")
    cookie = browser.get_cookie("session")
    assert cookie is not None
    plain = FlaskClient(app, use_cookies=True)
    plain.set_cookie("session", _token(app))
    response = plain.get("/get/user")
    assert response.text == "None" and "Cookie" not in response.vary
    response = plain.get("/set/user/bob")
    assert "Set-Cookie" not in response.headers and response.headers["X-Session-Token"]


def test_both_serves_a_header_request_by_the_header_and_others_by_the_cookie() -> None:
    app, store = _app("both")
    browser = app.test_client()
    response = browser.get("/set/user/alice")
    assert "session=" in response.headers["Set-Cookie"]
    assert "X-Session-Token" not in response.headers
    assert set(response.vary) == {"Cookie", "Authorization"}
    cookie = browser.get_cookie("session")
    assert cookie is not None
    api = HeaderClient(app)
    response = api.get("/set/user/bob")
    assert "Set-Cookie" not in response.headers and api.token
    assert set(response.vary) == {"Authorization"}
    # The same token works either way; with the header present the cookie is not read.
    assert browser.get("/get/user").text == "'alice'"
    assert browser.get("/get/user", headers={"Authorization": f"Bearer {api.token}"}).text == (
        "'bob'"
    )
    api.token = cookie.value
    assert api.get("/get/user").text == "'alice'"
    response = api.get("/logout")
    assert response.headers["X-Session-Token"] == "" and "Set-Cookie" not in response.headers
    assert browser.get("/get/user").text == "None"  # the cookie's session ended too


def test_both_rejects_a_bad_header_even_with_a_good_cookie() -> None:
    app, store = _app("both")
    browser = app.test_client()
    browser.get("/set/user/alice")
    reasons = rejections(app)
    response = browser.get("/get/user", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.text == "None" and reasons == ["malformed"]


# -- the cookie path is unchanged ------------------------------------------------------------------


def test_cookie_mode_sends_exactly_what_it_sent_before() -> None:
    """The default transport adds nothing: no header, no extra ``Vary``, no rejection of an
    ``Authorization`` header the app uses for something else."""
    app, store = _app("cookie")
    reasons = rejections(app)
    client = app.test_client()
    created = client.get("/set/user/alice", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert sorted(created.headers.keys()) == [
        "Content-Length",
        "Content-Type",
        "Set-Cookie",
        "Vary",
    ]
    assert created.headers["Vary"] == "Cookie"
    assert client.get("/get/user", headers={"Authorization": "Bearer x"}).text == "'alice'"
    ended = client.get("/destroy")
    assert "X-Session-Token" not in ended.headers and "session=;" in ended.headers["Set-Cookie"]
    assert reasons == []


def test_the_check_leaves_out_cookie_settings_when_no_cookie_is_sent() -> None:
    """``flask sessions check`` notes an insecure cookie only where a cookie can be sent."""
    messages = {}
    for transport in ("cookie", "both", "header"):
        app, _ = _app(transport, cookie_httponly=False)
        messages[transport] = [finding.message for finding in check_config(_interface(app).config)]
    assert any("SESSION_COOKIE_HTTPONLY" in message for message in messages["cookie"])
    assert messages["both"] == messages["cookie"]
    assert not any("COOKIE" in message for message in messages["header"])
