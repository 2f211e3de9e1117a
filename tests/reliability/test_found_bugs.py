"""Library bugs found while writing the reliability tests, kept as strict expected failures.

Each one fails today and is marked ``xfail(strict=True)``: the suite stays green, the failure
shows as ``XFAIL`` with its reason in the ``-ra`` summary, and once ``src/`` is fixed the test
passes, which strict mode reports as a failure so the mark is removed.
"""

from __future__ import annotations

import pytest
from flask import Flask, session

from flask_serversession import ServerSession, SessionTooLarge
from flask_serversession.stores.memory import MemoryStore


@pytest.mark.xfail(
    strict=True,
    raises=pytest.fail.Exception,  # "DID NOT RAISE": no other error counts as the bug
    reason="bug: an assign-only save (a patch without loading) checks SESSION_MAX_SIZE against"
    " the changed values only, so a session grows past the limit a few keys at a time",
)
def test_max_size_caps_a_session_grown_by_assign_only_writes() -> None:
    """docs/configuration.md: SESSION_MAX_SIZE is the "largest serialized session"; the
    interface checks the whole session when it was loaded, but ``_save``'s not-loaded branch
    passes only the patch's values to ``_check_size``."""
    store = MemoryStore()
    app = Flask(__name__)
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
    # Today no request raises, and the stored session holds about 2,000 bytes.
