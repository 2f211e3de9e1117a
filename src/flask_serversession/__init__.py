"""Flask-ServerSession: server-side sessions for Flask.

The browser keeps only a signed, random session ID; the data lives in a store on the server.
``flask.session`` works as with Flask's own cookie session.
"""

from __future__ import annotations

from .errors import (
    ConfigurationError,
    InvalidUserId,
    NotServerSideSession,
    ServerSessionError,
    SessionDataCorrupt,
    SessionDataError,
    SessionIdCollision,
    SessionStoreUnavailable,
    SessionTooLarge,
    SessionTooManyKeys,
    UnsupportedOperation,
)
from .extension import ServerSession, Session
from .manage import SessionInfo, SessionManager
from .session import ServerSideSession, current_session
from .signals import session_created, session_destroyed, session_regenerated, session_rejected
from .stores import Store, register_store, store_from_url

__all__ = [
    "ConfigurationError",
    "InvalidUserId",
    "NotServerSideSession",
    "ServerSession",
    "ServerSessionError",
    "ServerSideSession",
    "Session",
    "SessionDataCorrupt",
    "SessionDataError",
    "SessionIdCollision",
    "SessionInfo",
    "SessionManager",
    "SessionStoreUnavailable",
    "SessionTooLarge",
    "SessionTooManyKeys",
    "Store",
    "UnsupportedOperation",
    "current_session",
    "register_store",
    "session_created",
    "session_destroyed",
    "session_regenerated",
    "session_rejected",
    "store_from_url",
]
