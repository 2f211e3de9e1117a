"""The API example (examples/api/app.py) through a real threaded server and a plain HTTP
client with no cookie jar: the session token travels only in headers."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from http_server import HttpResponse, parse_raw_response, raw_request, request, serve
from rejections import rejections

from flask_serversession import ServerSession
from flask_serversession.cli import sessions
from flask_serversession.stores.sqlite import SQLiteStore
from flask_serversession.testing import CountingStore

ROOT = Path(__file__).resolve().parent.parent
TOKEN_HEADER = "X-Session-Token"
PAGE_ORIGIN = "http://page.test"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """examples/api/app.py, imported from its path (importing creates no app)."""
    spec = importlib.util.spec_from_file_location(
        "api_example_app", ROOT / "examples" / "api" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds static/ next to the module's file
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    counting = CountingStore(SQLiteStore(str(tmp_path / "sessions.db")))
    yield counting
    counting.close()


@pytest.fixture
def app(example: ModuleType, store: CountingStore) -> Flask:
    created: Flask = example.create_app(
        {"TESTING": True, "SESSION_STORE": store, "API_ALLOWED_ORIGINS": [PAGE_ORIGIN]}
    )
    return created


@pytest.fixture
def base(app: Flask) -> Iterator[str]:
    with serve(app) as url:
        yield url


def call(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """One request with no cookie, the token (if any) as ``Authorization: Bearer``."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    response = request(base, path, method=method, body=data, headers=sent)
    assert response.status < 500, response.text
    assert response.header_values("Set-Cookie") == []  # header transport: never a cookie
    return response


def json_of(response: HttpResponse) -> Any:
    assert response.header_values("Content-Type") == ["application/json"], response.headers
    return json.loads(response.body)


def token_in(response: HttpResponse) -> str | None:
    """The ``X-Session-Token`` response header's value, or ``None`` when there is none."""
    values = response.header_values(TOKEN_HEADER)
    assert len(values) <= 1, values
    return values[0] if values else None


def log_in(base: str, user: str = "alice", password: str = "wonderland") -> str:
    response = call(base, "POST", "/login", body={"user": user, "password": password})
    assert response.status == 200, response.text
    assert json_of(response)["user"] == user
    token = token_in(response)
    assert token, response.headers
    return token


def me(base: str, token: str | None) -> HttpResponse:
    return call(base, "GET", "/me", token)


# -- logging in, the protected resource, logging out ----------------------------------------------


def test_login_gives_a_token_that_opens_the_protected_resource(base: str) -> None:
    token = log_in(base)
    assert "alice" not in token.lower() and len(token) < 100
    response = me(base, token)
    assert response.status == 200
    assert json_of(response)["user"] == "alice" and json_of(response)["calls"] == 1
    assert token_in(response) is None  # nothing new to say: no header
    assert "authorization" in response.vary
    assert json_of(me(base, token))["calls"] == 2  # the session keeps data between calls
    assert log_in(base) != token  # each login is a new session, with its own token


def test_the_protected_resource_needs_a_token(base: str) -> None:
    response = me(base, None)
    assert response.status == 401
    assert json_of(response)["error"] == "Unauthorized"
    assert response.header_values("WWW-Authenticate") == ["Bearer"]
    assert token_in(response) is None


@pytest.mark.parametrize(
    "credentials",
    [
        {"user": "alice", "password": "wrong"},
        {"user": "alice", "password": ""},
        {"user": "nobody", "password": "wonderland"},
        {"user": "bob", "password": "wonderland"},
        {"user": ["alice"], "password": None},
        {},
    ],
)
def test_a_wrong_password_gives_no_token(
    app: Flask, base: str, credentials: dict[str, Any], store: CountingStore
) -> None:
    response = call(base, "POST", "/login", body=credentials)
    assert response.status == 401 and token_in(response) is None
    assert json_of(response)["message"] == "Wrong user name or password."
    assert store.total == 0


def test_logout_ends_the_token(app: Flask, base: str) -> None:
    token = log_in(base)
    response = call(base, "POST", "/logout", token)
    assert response.status == 200 and token_in(response) == ""  # ended: an empty header
    refused = me(base, token)
    assert refused.status == 401
    assert ServerSession.manager(app).sessions_of("alice") == []


# -- my devices, log out everywhere ---------------------------------------------------------------


def test_devices_lists_the_users_logins(base: str) -> None:
    laptop, phone = log_in(base), log_in(base)
    log_in(base, "bob", "builder")
    response = call(base, "GET", "/devices", laptop, headers={"User-Agent": "Laptop/1.0"})
    assert response.status == 200
    devices = json_of(response)["devices"]
    assert len(devices) == 2 and all(d["user_id"] == "alice" for d in devices)
    assert [d["this_device"] for d in devices].count(True) == 1
    assert all(d["ip"] == "127.0.0.1" for d in devices)
    from_phone = json_of(call(base, "GET", "/devices", phone))["devices"]
    assert {d["handle"] for d in from_phone} == {d["handle"] for d in devices}
    assert all(laptop not in json.dumps(d) and phone not in json.dumps(d) for d in devices)


def test_logout_everywhere_ends_the_other_tokens_on_their_next_request(
    app: Flask, base: str
) -> None:
    laptop, phone, tablet = log_in(base), log_in(base), log_in(base)
    bobs = log_in(base, "bob", "builder")
    assert me(base, phone).status == 200
    response = call(base, "POST", "/logout-everywhere", laptop)
    assert response.status == 200 and json_of(response) == {"ended": 3}
    assert token_in(response) == ""
    for ended in (phone, tablet, laptop):
        refused = me(base, ended)  # the very next request
        assert refused.status == 401
        assert token_in(refused) in (None, "")
    assert me(base, bobs).status == 200
    assert ServerSession.manager(app).sessions_of("alice") == []


def test_a_token_revoked_from_the_command_line_is_refused_next(app: Flask, base: str) -> None:
    laptop, phone = log_in(base), log_in(base)
    devices = json_of(call(base, "GET", "/devices", laptop))["devices"]
    [phones] = [device["handle"] for device in devices if not device["this_device"]]
    result = app.test_cli_runner().invoke(sessions, ["revoke", phones])
    assert result.exit_code == 0, result.output
    refused = me(base, phone)
    assert refused.status == 401 and token_in(refused) == ""
    assert me(base, laptop).status == 200


def test_logout_everywhere_needs_a_login(base: str) -> None:
    assert call(base, "POST", "/logout-everywhere").status == 401


# -- bad tokens -----------------------------------------------------------------------------------

#: Authorization values that must not open a session, and whether each is refused as a bad
#: token (``session_rejected``) rather than taken as no token at all (None: either will do).
GARBLED: list[tuple[str, bool | None]] = [
    ("Bearer", False),
    ("bearer", False),
    ("Bearer ", False),
    ("Bearer x", True),
    ("Basic YWxpY2U6d29uZGVybGFuZA==", True),
    ("Bearer " + "A" * 43 + ".forged", True),
    ("Bearer " + "A" * 5000, True),
    ("Bearer a.b.c", True),
    ("Bearer abc, Bearer def", True),
    ("Token abc", True),
    ("", None),
]


@pytest.mark.parametrize(("authorization", "rejected"), GARBLED)
def test_a_garbled_token_is_refused_without_reaching_the_store(
    app: Flask, base: str, store: CountingStore, authorization: str, rejected: bool | None
) -> None:
    reasons = rejections(app)
    response = call(base, "GET", "/me", headers={"Authorization": authorization})
    assert response.status == 401
    response = call(base, "GET", "/devices", headers={"Authorization": authorization})
    assert response.status == 401
    assert store.total == 0
    assert set(reasons) <= {"bad-signature", "malformed", "too-long"}
    if rejected is not None:
        assert len(reasons) == (2 if rejected else 0), reasons


def test_a_token_tampered_with_is_refused(app: Flask, base: str, store: CountingStore) -> None:
    token = log_in(base)
    before = store.total
    # A character of the signature whose six bits all count: the last one of the base64 text
    # also carries two bits of padding, which decoding drops ("A" and "B" there decode alike).
    signed, signature = token.rsplit(".", 1)
    flipped = f"{signed}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    for forged in (flipped, token + "x", token[1:], token.upper(), token.replace(".", "..")):
        assert me(base, forged).status == 401
    assert store.total == before
    assert me(base, token).status == 200


def test_hostile_header_bytes_never_give_a_5xx(base: str, store: CountingStore) -> None:
    """What no well-behaved client sends: bytes outside ASCII, several Authorization headers."""
    token = log_in(base)
    before = store.total
    for authorization in (
        "Bearer caf\xe9".encode("latin-1"),
        "Bearer \u2603".encode(),
        b"Bearer \x00\x01",
        b"Bearer " + token.encode() + b"\xff",
    ):
        raw = raw_request(
            base, b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization + b"\r\n\r\n"
        )
        status, _, _ = parse_raw_response(raw)
        assert 400 <= status < 500, raw[:200]
    twice = (
        f"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, _, _ = parse_raw_response(raw_request(base, twice))
    assert status == 401  # two values are one too many, even two good ones
    assert store.total == before


# -- CORS, and the page ---------------------------------------------------------------------------


def test_a_listed_origin_may_call_the_api_and_read_the_token(base: str) -> None:
    preflight = call(
        base,
        "OPTIONS",
        "/login",
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.header_values("Access-Control-Allow-Origin") == [PAGE_ORIGIN]
    allowed = preflight.header_values("Access-Control-Allow-Headers")[0].lower()
    assert "authorization" in allowed and "content-type" in allowed
    response = call(
        base,
        "POST",
        "/login",
        body={"user": "alice", "password": "wonderland"},
        headers={"Origin": PAGE_ORIGIN},
    )
    assert response.header_values("Access-Control-Allow-Origin") == [PAGE_ORIGIN]
    exposed = ",".join(response.header_values("Access-Control-Expose-Headers")).lower()
    assert TOKEN_HEADER.lower() in exposed
    assert response.header_values("Access-Control-Allow-Credentials") == []


def test_another_origin_is_not_allowed(base: str) -> None:
    response = call(base, "GET", "/me", headers={"Origin": "http://evil.test"})
    assert response.header_values("Access-Control-Allow-Origin") == []


def test_the_page_is_served_by_the_api(base: str) -> None:
    response = call(base, "GET", "/")
    assert response.status == 200 and "fetch(" in response.text
    assert "localStorage" not in response.text.replace("not localStorage", "")


def test_the_store_and_key_come_from_the_environment(
    example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("FLASK_SESSION_STORE", f"sqlite:///{path}")
    monkeypatch.setenv("FLASK_SECRET_KEY", "a key from the environment")
    monkeypatch.setenv("FLASK_API_ALLOWED_ORIGINS", '["https://app.example"]')
    app: Flask = example.create_app({"TESTING": True})
    assert app.secret_key == "a key from the environment"
    assert app.config["API_ALLOWED_ORIGINS"] == ["https://app.example"]
    assert app.config["SESSION_TRANSPORT"] == "header"
    with serve(app) as url:
        log_in(url)
    assert path.exists()
    assert len(ServerSession.manager(app).sessions_of("alice")) == 1
