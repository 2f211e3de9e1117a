"""The one exception tree of Flask-ServerSession.

::

    ServerSessionError
     +-- ConfigurationError          bad or contradictory configuration, raised at start-up
     +-- SessionStoreUnavailable     the store cannot be reached: HTTP 503 unless handled
     +-- SessionDataError            a value cannot be stored
     |    +-- SessionTooLarge        the serialized session exceeds SESSION_MAX_SIZE
     |    +-- SessionTooManyKeys     the session holds more keys than SESSION_MAX_KEYS
     |    +-- InvalidUserId          session.login() got a user id no store can index
     +-- SessionDataCorrupt          a stored record is not one we wrote (logged, then dropped)
     +-- UnsupportedOperation        the store lacks a capability (listing, user index, ...)
     +-- NotServerSideSession        current_session(): flask.session is not ours (RuntimeError)
     +-- SessionIdCollision          no unique session ID in 3 tries: a broken RNG (RuntimeError)
     +-- migrate.Unmigratable        an old record or Flask cookie session that cannot be moved

Every error names what went wrong in terms a user can act on: the store and the cause, the
session key (the name in ``session[...]``, never the session ID), the config key.
"""

from __future__ import annotations

from collections.abc import Sequence

from werkzeug.exceptions import ServiceUnavailable


class ServerSessionError(Exception):
    """Base class of every error raised by Flask-ServerSession."""


class ConfigurationError(ServerSessionError, ValueError):
    """The configuration is invalid or contradicts itself. Raised by ``init_app``."""


class SessionStoreUnavailable(ServerSessionError, ServiceUnavailable):
    """The session store could not be reached or failed.

    It is an HTTP 503 for Flask, so a view that touches the session during an outage answers
    503 (with a ``Retry-After`` header) unless the app registers its own handler. The message
    names the store and the cause; the body sent to the client stays generic.
    """

    #: What the client sees. The detailed message is for logs only.
    description = "The session store is temporarily unavailable. Please try again shortly."

    def __init__(self, store: str, reason: str) -> None:
        ServiceUnavailable.__init__(self, retry_after=1)
        #: A short, human name of the store, without credentials (``"sqlite:///app.db"``).
        self.store = store
        #: Why the store failed, usually the driver's own message.
        self.reason = reason

    def __str__(self) -> str:
        return f"session store {self.store} is unavailable: {self.reason}"

    def __reduce__(self) -> tuple[type[SessionStoreUnavailable], tuple[str, str]]:
        return (type(self), (self.store, self.reason))


class SessionDataError(ServerSessionError, TypeError):
    """A value in the session cannot be stored. ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"session[{key!r}] cannot be stored: {reason}")
        #: The session key (as in ``session[key]``) whose value failed.
        self.key = key
        self.reason = reason


class SessionTooLarge(SessionDataError):
    """The serialized session is larger than ``SESSION_MAX_SIZE``."""

    def __init__(self, size: int, limit: int, largest: Sequence[tuple[str, int]]) -> None:
        names = ", ".join(f"{key!r} ({n:,} bytes)" for key, n in largest)
        ServerSessionError.__init__(
            self,
            f"session is {size:,} bytes serialized, over SESSION_MAX_SIZE of {limit:,} bytes;"
            f" largest keys: {names}",
        )
        self.key = largest[0][0] if largest else ""
        self.reason = "session too large"
        self.size = size
        self.limit = limit
        #: ``(key, size)`` pairs, largest first.
        self.largest = list(largest)


class SessionTooManyKeys(SessionDataError):
    """The session holds more keys than ``SESSION_MAX_KEYS``.

    .. versionadded:: 0.1
    """

    def __init__(self, count: int, limit: int) -> None:
        ServerSessionError.__init__(
            self,
            f"session holds {count:,} keys, over SESSION_MAX_KEYS of {limit:,}: keep many"
            " items in one value (a list or a dict) rather than a key each",
        )
        self.key = ""
        self.reason = "too many keys"
        self.count = count
        self.limit = limit


class InvalidUserId(SessionDataError):
    """``session.login(user_id)`` got a user id that not every store can index: it must be 1
    to :data:`~flask_serversession.ids.MAX_USER_ID_LENGTH` characters, with no control
    character and no lone surrogate. Raised by ``login()`` itself, before anything is written.

    .. versionadded:: 0.1
    """

    def __init__(self, reason: str) -> None:
        ServerSessionError.__init__(self, f"session.login(): the user id {reason}")
        self.key = ""
        self.reason = reason


class SessionDataCorrupt(ServerSessionError, ValueError):
    """A stored record or value is not one Flask-ServerSession could have written.

    Raised by stores and by :func:`~flask_serversession.serialization.loads_value`; the session
    interface logs it and treats the session as absent, so one bad record cannot lock a user out.
    """


class UnsupportedOperation(ServerSessionError, NotImplementedError):
    """The store does not have the capability this operation needs."""

    def __init__(self, store: str, capability: str) -> None:
        super().__init__(f"session store {store} does not support {capability!r}")
        self.store = store
        self.capability = capability


class NotServerSideSession(ServerSessionError, RuntimeError):
    """:func:`~flask_serversession.session.current_session` found that ``flask.session`` is not
    a server-side session: the app does not use Flask-ServerSession, or has no ``SECRET_KEY``.

    .. versionadded:: 0.1
    """


class SessionIdCollision(ServerSessionError, RuntimeError):
    """Three new random 256-bit session IDs were all taken: the random number generator is
    broken. Nothing was stored.

    .. versionadded:: 0.1
    """
