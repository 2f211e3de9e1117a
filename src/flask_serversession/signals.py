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
    A request carried a session cookie that was refused, or a stored session was unreadable.
    Keyword: ``reason``, one of ``"bad-signature"`` (forged, or signed by an unknown key),
    ``"malformed"``, ``"too-long"``, ``"corrupt"``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

session_created = _signals.signal("session-created")
session_regenerated = _signals.signal("session-regenerated")
session_destroyed = _signals.signal("session-destroyed")
session_rejected = _signals.signal("session-rejected")
