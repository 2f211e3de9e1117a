"""API: a JSON API whose clients carry their session in a header instead of a cookie.

Run it with ``python examples/api/app.py`` and open http://localhost:5002 for a page that
calls it with ``fetch()`` (``PORT`` and ``HOST`` change where it listens), or drive it with
curl; ``alice`` / ``wonderland`` and ``bob`` / ``builder`` can log in::

    curl -si -X POST localhost:5002/login -H 'Content-Type: application/json' \\
         -d '{"user": "alice", "password": "wonderland"}'       # X-Session-Token: <token>
    curl -s localhost:5002/me -H 'Authorization: Bearer <token>'

What it shows:

- ``SESSION_TRANSPORT = "header"``: the token is read from ``Authorization: Bearer <token>``,
  and a response that starts or ends a session says so in ``X-Session-Token`` (the new token,
  or an empty value); no cookie is ever read or set;
- ``session.login(user)`` and ``session.logout()``, exactly as with cookies;
- "my devices" through ``serversession.sessions_of(user)``, and "log out everywhere" through
  ``revoke_user()``: every other token is refused on its very next request;
- no CSRF token: a browser never attaches the ``Authorization`` header by itself, so another
  site cannot make it send a request with the user's session (docs/api-tokens.md);
- CORS for a page on another origin, when ``API_ALLOWED_ORIGINS`` lists it.

Configuration comes from the environment through ``app.config.from_prefixed_env()``:
``FLASK_SECRET_KEY`` (a development key is used when it is missing: never deploy that),
``FLASK_SESSION_STORE`` (default: an SQLite file in the instance folder; any store but
Memcached, which cannot list a user's sessions for /devices) and
``FLASK_API_ALLOWED_ORIGINS`` (a JSON list such as ``'["https://app.example"]'``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, current_app, jsonify, request, session
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from flask_serversession import ServerSession, ServerSideSession

#: Only for running this example on your machine: set FLASK_SECRET_KEY anywhere else.
DEV_SECRET_KEY = "dev-only-insecure-key--set-FLASK_SECRET_KEY"

#: The user list: user ID -> display name and password hash (never the password itself).
USERS: dict[str, dict[str, str]] = {
    "alice": {"name": "Alice", "password": generate_password_hash("wonderland")},
    "bob": {"name": "Bob", "password": generate_password_hash("builder")},
}
#: Checked when the user name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))

serversession = ServerSession()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app. ``config`` overrides the defaults and the environment (tests use it)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=DEV_SECRET_KEY,
        SESSION_TRANSPORT="header",  # Authorization: Bearer <token>; never a cookie
        SESSION_RECORD_CLIENT=True,  # keep IP address and user agent at login, for the devices
        API_ALLOWED_ORIGINS=[],  # pages on other origins that may call this API
    )
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY, FLASK_SESSION_STORE, ...
    app.config.update(config or {})
    serversession.init_app(app)
    app.register_error_handler(HTTPException, as_json)
    app.after_request(cors)
    app.add_url_rule("/", view_func=page)
    app.add_url_rule("/login", view_func=login, methods=["POST"])
    app.add_url_rule("/me", view_func=me)
    app.add_url_rule("/devices", view_func=devices)
    app.add_url_rule("/logout", view_func=logout, methods=["POST"])
    app.add_url_rule("/logout-everywhere", view_func=logout_everywhere, methods=["POST"])
    return app


def server_session() -> ServerSideSession:
    """``flask.session``, typed as what it is here."""
    assert isinstance(session, ServerSideSession)
    return session


def current_user() -> str:
    """The logged-in user's ID, or a 401. A missing, forged, expired or revoked token all load
    as a new, empty session, so they all end here."""
    user_id = server_session().user_id
    if user_id not in USERS:
        abort(401, description="Log in first: POST /login, then send the token it gives.")
    return user_id


# -- every response -------------------------------------------------------------------------------


def as_json(error: HTTPException) -> Response:
    """Errors as JSON too: an API client should not have to parse an HTML page."""
    response = error.get_response()
    response.data = jsonify(error=error.name, message=error.description).get_data()
    response.content_type = "application/json"
    if error.code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def cors(response: Response) -> Response:
    """Let the listed origins call the API with the ``Authorization`` header. The session
    extension then adds ``X-Session-Token`` to ``Access-Control-Expose-Headers``, so that the
    page can read it. No ``Allow-Credentials``: there is no cookie to send."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in current_app.config["API_ALLOWED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.vary.add("Origin")
    return response


# -- views ----------------------------------------------------------------------------------------


def page() -> ResponseReturnValue:
    """A page that calls this API with fetch(), holding the token in memory."""
    return current_app.send_static_file("index.html")


def login() -> ResponseReturnValue:
    """JSON ``{"user": ..., "password": ...}``; the token comes back in ``X-Session-Token``."""
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    user_id = str(body.get("user", "")).strip().lower()
    user = USERS.get(user_id)
    password = str(body.get("password", ""))
    valid = check_password_hash(user["password"] if user else _DUMMY_HASH, password)
    if user is None or not valid:
        abort(401, description="Wrong user name or password.")
    server_session().login(user_id)  # a new session ID, bound to the user: a new token
    return {"user": user_id, "name": user["name"]}


def me() -> ResponseReturnValue:
    """The protected resource."""
    user_id = current_user()
    sess = server_session()
    sess["calls"] = sess.get("calls", 0) + 1  # the session holds data, as with cookies
    logged_in_at = sess.authenticated_at
    return {
        "user": user_id,
        "name": USERS[user_id]["name"],
        "logged_in_at": logged_in_at.isoformat() if logged_in_at else None,
        "calls": sess["calls"],
    }


def devices() -> ResponseReturnValue:
    """My devices: every live session (token) of mine, this one marked."""
    user_id = current_user()
    this_handle = server_session().handle
    return {
        "devices": [
            {**info.to_dict(), "this_device": info.handle == this_handle}
            for info in serversession.sessions_of(user_id)  # the most recently used first
        ]
    }


def logout() -> ResponseReturnValue:
    """End this token. The response says so with an empty ``X-Session-Token``."""
    server_session().logout()
    return {"logged_out": True}


def logout_everywhere() -> ResponseReturnValue:
    """End every token of mine: the others at once, this one with this response."""
    user_id = current_user()
    ended = serversession.revoke_user(user_id, keep=server_session().handle)
    server_session().logout()
    return {"ended": ended + 1}


if __name__ == "__main__":
    api = create_app()
    if api.secret_key == DEV_SECRET_KEY:
        api.logger.warning("using the development SECRET_KEY: set FLASK_SECRET_KEY")
    api.run(host=os.environ.get("HOST", "localhost"), port=int(os.environ.get("PORT", "5002")))
