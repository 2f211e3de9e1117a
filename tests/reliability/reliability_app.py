"""The app the reliability tests serve with gunicorn (``reliability_app:app``).

Configured by environment variables: ``FSS_STORE`` (the store URL), ``FSS_SYNC_DIR`` (a
directory where overlapping requests meet) and optionally ``FSS_TOUCH_INTERVAL``
(``SESSION_TOUCH_INTERVAL``; a tiny one makes every load refresh the idle expiry).

Requests in different worker processes cannot share a barrier, so they meet through files:
each one creates its own file, then waits until its partner's exists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flask import Flask, Response, abort, request, session

from flask_serversession import ServerSession, current_session

#: Seconds a view waits for its partner before giving up with a 504.
WAIT = 10.0

app = Flask(__name__)
app.secret_key = "reliability-test-secret-0123456789abcdef"
# The outage test writes a key per request into one session, a few thousand in a run: a
# workload about outages, not about SESSION_MAX_KEYS, so the cap is lifted out of its way.
app.config["SESSION_MAX_KEYS"] = 100_000
if "FSS_TOUCH_INTERVAL" in os.environ:
    app.config["SESSION_TOUCH_INTERVAL"] = float(os.environ["FSS_TOUCH_INTERVAL"])
sessions = ServerSession(app, store=os.environ["FSS_STORE"])
SYNC_DIR = Path(os.environ["FSS_SYNC_DIR"])


def arrive(name: str) -> None:
    """Announce that this request reached point ``name``."""
    (SYNC_DIR / name).touch()


def wait_for(*names: str) -> None:
    """Wait until every file in ``names`` exists (another request reached that point)."""
    deadline = time.monotonic() + WAIT
    while not all((SYNC_DIR / name).exists() for name in names):
        if time.monotonic() > deadline:
            abort(504, f"gave up waiting for {names}")
        time.sleep(0.001)


@app.get("/none")
def untouched() -> str:
    return "no session here"


@app.get("/pid")
def pid() -> str:
    return str(os.getpid())


@app.get("/seed")
def seed() -> str:
    session["trial"] = request.args["trial"]
    return "seeded"


@app.get("/seed-cart")
def seed_cart() -> str:
    """A session like the tutorial's, with a nested value; permanent with ``?permanent=1``."""
    session["Username"] = "Admin"
    session["cart"] = [1, 2, 3]
    session["x"] = "old"
    session.permanent = request.args.get("permanent") == "1"
    return "seeded"


@app.get("/race/<key>")
def race(key: str) -> str:
    """Load the session, meet the partner (both have loaded), then write ``key``."""
    tag = request.args["tag"]
    before = session.get(key)
    arrive(f"{tag}-{key}")
    wait_for(f"{tag}-a", f"{tag}-b")
    session[key] = request.args["trial"]
    return f"{key}: {before} -> {session[key]}"


@app.get("/slow-put/<key>")
def slow_put(key: str) -> str:
    """Load the session, tell the test so, wait until it logged out, then write."""
    tag = request.args["tag"]
    session.get(key)
    arrive(f"{tag}-loaded")
    wait_for(f"{tag}-logged-out")
    session[key] = "written after the logout"
    return "written"


@app.get("/slow-read")
def slow_read() -> str:
    """Read (a flat value and, with ``?nested=1``, inside a list), tell the test so, wait until
    a writer has written, then finish without changing anything."""
    tag = request.args["tag"]
    seen = session.get("x")
    total = sum(session["cart"]) if request.args.get("nested") == "1" else 0
    arrive(f"{tag}-loaded")
    wait_for(f"{tag}-written")
    return f"{seen} {total}"


@app.get("/write")
def write() -> str:
    session["x"] = "new"
    if request.args.get("nested") == "1":
        session["cart"].append(4)  # a nested change: no ``session.modified`` needed
    return "written"


@app.get("/in-flight/<kind>")
def in_flight(kind: str) -> str:
    """Start (loading the session, except ``assign-only``), tell the test so, wait until the
    session was ended elsewhere, then finish as ``kind`` does."""
    tag = request.args["tag"]
    if kind != "assign-only":
        assert session["Username"] == "Admin"  # loads (and, with a tiny touch interval, touches)
    arrive(f"{tag}-loaded")
    wait_for(f"{tag}-ended")
    if kind == "read-modify":
        session["cart"].append(4)
        session["z"] = 1
    elif kind == "assign-only":
        session["k"] = 1
    else:
        assert kind == "read-only", kind
        assert session["cart"] == [1, 2, 3]
    return "done"


@app.get("/handle")
def handle() -> str:
    return current_session().handle or ""


@app.get("/regenerate")
def regenerate() -> str:
    current_session().regenerate()
    return "regenerated"


@app.get("/revoke/<handle>")
def revoke(handle: str) -> str:
    """End a session by handle, as another device's "end this session" button does."""
    return "revoked" if sessions.revoke(handle) else "not live"


@app.get("/put/<key>")
def put(key: str) -> str:
    session[key] = request.args["v"] * int(request.args.get("n", "1"))
    return "stored"


@app.get("/read")
def read() -> Response:
    return Response(json.dumps(dict(session), sort_keys=True), mimetype="application/json")


@app.get("/logout")
def logout() -> str:
    current_session().logout()
    return "logged out"
