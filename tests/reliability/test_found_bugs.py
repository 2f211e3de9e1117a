"""Library bugs found while writing the reliability tests.

A bug not fixed yet is kept here as a strict expected failure, marked ``xfail(strict=True)``:
the suite stays green, the failure shows as ``XFAIL`` with its reason in the ``-ra`` summary,
and once ``src/`` is fixed the test passes, which strict mode reports as a failure so the mark
is removed. A fixed bug's test stays, unmarked, so that it cannot come back.
"""

from __future__ import annotations

import pytest
from flask import Flask, session

from flask_serversession import ServerSession, SessionTooLarge
from flask_serversession.ids import store_key
from flask_serversession.stores import values_size
from flask_serversession.stores.memory import MemoryStore


def test_max_size_caps_a_session_grown_by_assign_only_writes() -> None:
    """docs/configuration.md: SESSION_MAX_SIZE is the "largest serialized session". Fixed bug:
    the interface checked the whole session when it was loaded, but an assign-only save (one
    patch, no load) checked only the assigned values, so a session grew past the limit a few
    keys at a time. The store now checks the session as the patch leaves it
    (``Patch.max_size``), still in one round trip."""
    store = MemoryStore()
    app = Flask(__name__)
    app.testing = True  # an error at save reaches the test instead of becoming a 500
    app.secret_key = "bug-test-secret"
    app.config["SESSION_MAX_SIZE"] = 1000
    ServerSession(app, store=store)

    @app.get("/put/<key>")
    def put(key: str) -> str:
        session[key] = "x" * 400  # assigned, never read: saved as a patch
        return "stored"

    client = app.test_client()
    with pytest.raises(SessionTooLarge):
        for key in ("a", "b", "c", "d", "e"):  # 5 x ~400 bytes: twice the limit
            client.get(f"/put/{key}")
    assert key == "c"  # the third one, 1,209 bytes in all, was refused
    cookie = client.get_cookie("session")
    assert cookie is not None
    record = store.load(store_key(cookie.value.split(".")[0]))
    assert record is not None and sorted(record.values) == ["a", "b"]
    assert values_size(record.values) <= 1000
