"""Accounts: a login form, your session's data, and a "Your devices" page.

Run it with ``python examples/accounts/app.py`` and open http://localhost:5001 (``PORT`` and
``HOST`` change where it listens). Log in as ``alice`` / ``wonderland`` or ``bob`` /
``builder`` from two browsers (or a normal and a private window): each one shows up under
"Your devices", and ending one there logs that browser out on its next click.

What it shows:

- ``session.login(user)`` at login (a new session ID, bound to the user, with the time, IP
  address and user agent, as ``SESSION_RECORD_CLIENT = True`` asks) and ``session.logout()``;
- ``serversession.sessions_of(user)``, ``revoke(handle)`` and
  ``revoke_user(user, keep=session.handle)`` ("log out everywhere else");
- every state-changing action is a POST form carrying a CSRF token kept in the session.

Configuration comes from the environment through ``app.config.from_prefixed_env()``:
``FLASK_SECRET_KEY`` (a development key is used when it is missing: never deploy that) and
``FLASK_SESSION_STORE`` (default: an SQLite file in the instance folder).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flask import (
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
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
        SESSION_RECORD_CLIENT=True,  # keep IP address and user agent at login, for the devices
    )
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY, FLASK_SESSION_STORE, ...
    app.config.update(config or {})
    serversession.init_app(app)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.filters["device"] = describe_device
    app.jinja_env.filters["when"] = format_time
    app.jinja_env.filters["ago"] = format_ago
    app.before_request(guard)
    app.after_request(no_store)
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/login", view_func=login, methods=["GET", "POST"])
    app.add_url_rule("/logout", view_func=logout, methods=["POST"])
    app.add_url_rule("/devices", view_func=devices)
    app.add_url_rule("/devices/end", view_func=end_device, methods=["POST"])
    app.add_url_rule("/devices/end-others", view_func=end_other_devices, methods=["POST"])
    return app


def server_session() -> ServerSideSession:
    """``flask.session``, typed as what it is here."""
    assert isinstance(session, ServerSideSession)
    return session


def current_user() -> str | None:
    """The logged-in user's ID, or ``None``. A revoked session loads as a new, empty one."""
    user_id = server_session().user_id
    return user_id if user_id in USERS else None


# -- CSRF: one random token per session, sent back by every form --------------------------------


def csrf_token() -> str:
    """This session's CSRF token, made on first use (templates call it in each form)."""
    token = session.get("_csrf")
    if not isinstance(token, str):
        token = session["_csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse a POST whose form does not carry this session's token."""
    expected = session.get("_csrf")
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description="The form's CSRF token is missing or wrong: reload the page.")


# -- every request --------------------------------------------------------------------------------


def guard() -> ResponseReturnValue | None:
    """Pages other than the login form need a logged-in user (checked first, so that a revoked
    session's next click, a POST included, lands on the login page); every POST needs the CSRF
    token."""
    if request.endpoint not in (None, "login", "static") and current_user() is None:
        return to_login()
    if request.method == "POST":
        check_csrf()
    return None


def no_store(response: Response) -> Response:
    """Pages show personal data: the browser's back button must not show them after logout."""
    response.headers["Cache-Control"] = "no-store"
    return response


def stale_cookie() -> bool:
    """The browser sent a session cookie the store does not know (any more): the session was
    ended from another device, expired, or the cookie is forged."""
    name = serversession.manager().config.cookie_name
    return name in request.cookies and server_session().new


def to_login() -> Response:
    """Redirect to the login form. A stale cookie is deleted on the way, so the form's CSRF
    token goes into a fresh session (a session ended seconds ago saves nothing: a request
    still in flight with its ID must not bring it back)."""
    if not stale_cookie():
        return redirect(url_for("login"))
    response = redirect(url_for("login", ended=1))
    config = serversession.manager().config
    response.delete_cookie(
        config.cookie_name,
        path=config.cookie_path,
        domain=config.cookie_domain,
        secure=config.cookie_secure,
        httponly=config.cookie_httponly,
        samesite=config.cookie_samesite,
    )
    return response


# -- views ----------------------------------------------------------------------------------------


def login() -> ResponseReturnValue:
    if current_user() is not None:
        return redirect(url_for("index"))
    if request.method == "GET" and stale_cookie():
        return to_login()
    if request.method == "POST":
        user_id = request.form.get("username", "").strip().lower()
        password = request.form.get("password", "")
        user = USERS.get(user_id)
        valid = check_password_hash(user["password"] if user else _DUMMY_HASH, password)
        if user is not None and valid:
            server_session().login(user_id)  # a new session ID, bound to the user
            session["_csrf"] = secrets.token_urlsafe(32)  # and a new CSRF token
            flash(f"Welcome, {user['name']}.")
            return redirect(url_for("index"))
        flash("Wrong user name or password.", "error")
        return render_template("login.html", username=user_id), 401
    return render_template("login.html", ended=bool(request.args.get("ended")))


def index() -> ResponseReturnValue:
    sess = server_session()
    sess["visits"] = sess.get("visits", 0) + 1
    name = serversession.manager().config.cookie_name
    return render_template(
        "index.html",
        user=USERS[sess.user_id or ""],
        user_id=sess.user_id,
        authenticated_at=sess.authenticated_at,
        values=sorted((k, v) for k, v in sess.items() if k != "_flashes"),  # shown above
        cookie_length=len(request.cookies.get(name, "")),
    )


def can_list_devices() -> bool:
    """Whether the store keeps an index of each user's sessions (Memcached keeps none)."""
    return ServerSession.manager().store.capabilities.by_user


def devices() -> ResponseReturnValue:
    user_id = current_user()
    assert user_id is not None
    if not can_list_devices():
        return render_template("devices.html", user=USERS[user_id], sessions=None)
    this_handle = server_session().handle
    sessions = serversession.sessions_of(user_id)  # the most recently used first
    sessions.sort(key=lambda info: info.handle != this_handle)  # then this device on top
    return render_template(
        "devices.html", user=USERS[user_id], sessions=sessions, this_handle=this_handle
    )


def end_device() -> ResponseReturnValue:
    """End one of *your* sessions. The handle comes from the form, so it is checked against
    the user's own sessions: a handle of someone else's session is refused."""
    user_id = current_user()
    assert user_id is not None
    handle = request.form.get("handle", "")
    if handle not in {info.handle for info in serversession.sessions_of(user_id)}:
        abort(404)
    if handle == server_session().handle:
        return logout()
    if serversession.revoke(handle):
        flash("That device is logged out: its next click will land on the login page.")
    else:
        flash("That session had already ended.")
    return redirect(url_for("devices"))


def end_other_devices() -> ResponseReturnValue:
    user_id = current_user()
    assert user_id is not None
    if not can_list_devices():
        return redirect(url_for("devices"))  # the page says why
    ended = serversession.revoke_user(user_id, keep=server_session().handle)
    flash(f"Logged out everywhere else ({ended} other device{'s' if ended != 1 else ''}).")
    return redirect(url_for("devices"))


def logout() -> ResponseReturnValue:
    server_session().logout()  # deleted on the server, cookie expired
    flash("You are logged out.")  # goes into a new, anonymous session
    return redirect(url_for("login"))


# -- template helpers -----------------------------------------------------------------------------

_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_device(user_agent: str | None) -> str:
    """ "Firefox on Linux" from a user agent string; the string itself when it is unknown."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    if browser is None:
        return user_agent[:40]
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    return f"{browser} on {system}" if system else browser


def format_time(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%d %b %Y %H:%M UTC")


def format_ago(moment: datetime) -> str:
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    if seconds < 60:
        return "just now"
    size, unit = next(
        unit for unit in ((86400, "day"), (3600, "hour"), (60, "minute")) if seconds >= unit[0]
    )
    count = int(seconds // size)
    return f"{count} {unit}{'s' if count != 1 else ''} ago"


if __name__ == "__main__":
    accounts = create_app()
    if accounts.secret_key == DEV_SECRET_KEY:
        accounts.logger.warning("using the development SECRET_KEY: set FLASK_SECRET_KEY")
    accounts.run(host=os.environ.get("HOST", "localhost"), port=int(os.environ.get("PORT", "5001")))
