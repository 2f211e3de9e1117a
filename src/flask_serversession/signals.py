"""Signals sent by Flask-ServerSession, with blinker as Flask's own signals.

Each is sent with the app as sender. None carries a session ID.

``session_created``
    A new session was stored. Keyword argument: ``session``.
``session_regenerated``
    A session got a new ID (:meth:`ServerSideSession.regenerate`). Keyword: ``session``.
``session_destroyed``
    A session was deleted from the store (:meth:`ServerSideSession.destroy`, or emptied).
    Keyword: ``session``.
``session_rejected``
    A request carried a session cookie that was refused, or a stored session was unreadable;
    the visitor gets a new, empty session. Keyword: ``reason``, one of:

    * ``"bad-signature"``: forged, or signed by a key not among ``SECRET_KEY`` and its
      fallbacks (ours, or with ``SESSION_MIGRATE_COOKIE_SESSIONS`` a Flask cookie session's);
    * ``"malformed"``: signed by our key but not a session ID, or not a Flask session;
    * ``"too-long"``: longer than any cookie we issue (refused before any HMAC work);
    * ``"expired"``: a Flask cookie session older than ``PERMANENT_SESSION_LIFETIME``;
    * ``"corrupt"``: a stored session, an old Flask-Session record or a signed Flask cookie
      session that cannot be read (not one we wrote, pickled, nested too deep);
    * ``"too-large"``: an old Flask-Session record or Flask cookie session over
      ``SESSION_MAX_SIZE``, which is not copied in;
    * ``"unknown"``: with migration from Flask-Session on, a cookie shaped as one of its
      session IDs for which neither store holds anything (forged, or expired there).
"""

from __future__ import annotations

from typing import Literal, get_args

from blinker import Namespace
from flask import Flask

#: Every ``reason`` :data:`session_rejected` sends (see the list above).
RejectionReason = Literal[
    "bad-signature",
    "malformed",
    "too-long",
    "expired",
    "corrupt",
    "too-large",
    "unknown",
]
REJECTION_REASONS: tuple[RejectionReason, ...] = get_args(RejectionReason)

_signals = Namespace()

session_created = _signals.signal("session-created")
session_regenerated = _signals.signal("session-regenerated")
session_destroyed = _signals.signal("session-destroyed")
session_rejected = _signals.signal("session-rejected")


def rejection_reason(reason: str) -> RejectionReason:
    """``reason`` as a :data:`RejectionReason`; a reason not listed there is a bug here."""
    for known in REJECTION_REASONS:
        if reason == known:
            return known
    raise ValueError(f"{reason!r} is not a RejectionReason")


def reject(app: Flask, reason: RejectionReason) -> None:
    """Send :data:`session_rejected` for ``app`` with ``reason``."""
    session_rejected.send(app, reason=reason)
