"""The session object a view sees as ``flask.session``: a lazy, change-tracking mapping.

Nothing is read from the store until the view reads the session. Assignments made before that
are kept as pending changes, and if the view never reads, they are saved as a patch without
loading at all. Once loaded, each value stays as its stored text until the view reads it: a
value never read is never decoded, and never encoded again at save. At the end of the request
the values the view was handed that can change in place are serialized and compared with what
was loaded, so nested changes (``session["cart"].append(3)``) are saved without
``session.modified = True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, ItemsView, Iterator, ValuesView
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flask.sessions import SessionMixin

from . import serialization
from .errors import NotServerSideSession, SessionDataCorrupt
from .ids import check_user_id, store_key
from .saving import NOT_DECODED, Changes, Origin

if TYPE_CHECKING:
    from .stores import Record
    from .transport import Transport


class ServerSideSession(SessionMixin):
    """A server-side session. Use it as a dict; :meth:`login` at login (or :meth:`regenerate`
    if you keep users yourself), :meth:`logout` at logout.

    ``modified`` and ``accessed`` follow Flask's meaning. Setting ``modified = True`` is never
    needed: changes are found by comparing values.
    """

    #: Set when a method that may change the session is called.
    modified: bool
    #: Set when the session is read or written in any way.
    accessed: bool

    def __init__(
        self,
        loader: Callable[[ServerSideSession], None] | None,
        session_id: str | None,
        opened_at: float = 0.0,
    ) -> None:
        self._loader: Callable[[ServerSideSession], None] | None = loader
        #: When the request began: a session ended after that was ended "meanwhile".
        self._opened_at = opened_at
        #: The ID from the request's cookie once verified (``None`` for a new session).
        self._session_id = session_id
        #: Current values. Before loading: only the values assigned so far. A value loaded but
        #: not read yet is :data:`~.saving.NOT_DECODED`: its text is in ``_stored``.
        self._data: dict[str, Any] = {}
        #: Serialized values as loaded; compared at save to find what changed.
        self._stored: dict[str, str] = {}
        #: The objects as decoded (handed to the view), to skip serializing immutable values
        #: nobody replaced.
        self._originals: dict[str, Any] = {}
        #: Told when a stored value turns out not to decode (see :meth:`set_loaded`).
        self._on_corrupt: Callable[[SessionDataCorrupt], None] | None = None
        #: The stored record's metadata, when one was loaded.
        self.record: Record | None = None
        #: The store held a tombstone: the session was ended by a concurrent request, so this
        #: one must write nothing and send no cookie.
        self._ended = False
        self._regenerate = False
        #: The user ID given to login(), bound at save.
        self._login: str | None = None
        #: Store keys of sessions to delete at save (set by destroy()).
        self._destroy_id: str | None = None
        #: Values written in this request before destroy(): readable until the request ends,
        #: never saved unless written again (see destroy()).
        self._carried: dict[str, Any] = {}
        self._failed = False
        #: Set once save_session ran, so the save is never attempted twice (Flask calls it
        #: again for the error response when the first attempt raised).
        self._saved = False
        #: Moved in by a plug-in under an ID the client does not hold yet: the response must
        #: carry the cookie.
        self._cookie_pending = False
        #: Made by a plug-in from something not ours (see :class:`~.saving.Origin`); ``_stored``
        #: then holds the values it was made with, serialized.
        self._origin: Origin | None = None
        #: How the ID travels in this request (the interface sets it when it opens the
        #: session; ``None``: the interface's default).
        self.transport: Transport | None = None
        self.modified = False
        self.accessed = False
        if session_id is None:
            self._loader = None  # nothing to load: a new, empty session

    @classmethod
    def moving_in(
        cls, loader: Callable[[ServerSideSession], None], opened_at: float = 0.0
    ) -> ServerSideSession:
        """A session a plug-in moves in from elsewhere when it is first read (or at the end of
        the request, before anything is saved): ``loader`` calls :meth:`set_loaded`, with the
        ``session_id`` it was given if it moved one in."""
        session = cls(None, None, opened_at)
        session._loader = loader
        return session

    @classmethod
    def made_from(
        cls,
        values: dict[str, Any],
        serialized: dict[str, str],
        origin: Origin,
        opened_at: float = 0.0,
    ) -> ServerSideSession:
        """A new session a plug-in pre-fills with ``values`` (``serialized``: the same,
        serialized) from ``origin``; stored when the request ends (see :class:`~.saving.Origin`)."""
        session = cls(None, None, opened_at)
        session._data = values
        session._stored = serialized
        session._origin = origin
        return session

    # -- loading ---------------------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        """Whether the values are known (read from the store, or the session is new)."""
        return self._loader is None

    @property
    def opened_at(self) -> float:
        """When the request that opened the session began (the interface's clock)."""
        return self._opened_at

    def load(self) -> None:
        """Read the session from the store now, if it was not read yet."""
        loader = self._loader
        if loader is not None:
            try:
                loader(self)  # calls set_loaded
            except BaseException:
                # A store outage: the view gets the error; the end of the request saves nothing.
                self._failed = True
                raise

    def set_loaded(
        self,
        record: Record | None,
        stored: dict[str, str],
        values: dict[str, Any] | None = None,
        ended: bool = False,
        session_id: str | None = None,
        on_corrupt: Callable[[SessionDataCorrupt], None] | None = None,
    ) -> None:
        """Called by the loader with what the store held (``record`` None: nothing live;
        ``ended``: a tombstone, the session was ended on purpose meanwhile). ``session_id``:
        the session was moved in under that new ID, which the response must carry.

        ``values``: ``stored`` decoded; ``None`` to decode each value the first time the view
        reads it. A value that then does not decode is reported to ``on_corrupt`` (which may
        raise), and the session becomes new and empty, as if the record had been unreadable
        from the start: only the values this request wrote are kept, to be saved afresh.
        """
        if session_id is not None:
            self._session_id = session_id
            self._cookie_pending = True
        pending = self._data
        self.record = record
        self._stored = stored
        if values is None:
            self._originals = {}
            self._data = dict.fromkeys(stored, NOT_DECODED)
        else:
            self._originals = values
            self._data = dict(values)
        self._on_corrupt = on_corrupt
        self._data.update(pending)
        self._ended = ended
        self._loader = None
        if record is None:
            # An ID the store does not know is never adopted: a new ID is made if data is saved.
            self._session_id = None

    def _read(self) -> dict[str, Any]:
        self.accessed = True
        if self._loader is not None:
            self.load()
        return self._data

    def _write(self) -> dict[str, Any]:
        self.accessed = True
        self.modified = True
        return self._data

    def _decode(self, key: str) -> Any:
        """The value of ``key``, decoded from its stored text now; :class:`KeyError` if that
        text turned out corrupt (the session is then new and empty, see :meth:`set_loaded`)."""
        try:
            value = serialization.loads_value(self._stored[key])
        except SessionDataCorrupt as exc:
            self._drop_corrupt(exc)
            raise KeyError(key) from None
        self._originals[key] = value
        self._data[key] = value
        return value

    def _decode_all(self) -> dict[str, Any]:
        """Every value decoded: for the reads that hand out all of them (items, values, copy)."""
        data = self._read()
        try:
            for key in [key for key, value in data.items() if value is NOT_DECODED]:
                self._decode(key)
        except KeyError:
            pass  # a corrupt value emptied the session: nothing left to decode
        return self._data

    def _written(self) -> dict[str, Any]:
        """The values this request wrote: assigned, or replaced by another object."""
        originals = self._originals
        return {
            key: value
            for key, value in self._data.items()
            if value is not NOT_DECODED
            and (self._loader is not None or key not in originals or value is not originals[key])
        }

    def _drop_corrupt(self, exc: SessionDataCorrupt) -> None:
        """A stored value does not decode: the record is not ours to trust. The session becomes
        new, keeping only what this request wrote (saved as a new session), and the interface
        is told (it reports and deletes the record)."""
        on_corrupt = self._on_corrupt
        self._data = self._written()
        self._stored = {}
        self._originals = {}
        self._on_corrupt = None
        self.record = None
        self._session_id = None
        self._regenerate = False
        if on_corrupt is not None:
            try:
                on_corrupt(exc)
            except BaseException:
                self._failed = True  # as a failed load: the view gets the error, nothing saved
                raise

    # -- the mapping -------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self._read()[key]
        if value is NOT_DECODED:
            return self._decode(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._write()[key] = value

    def __delitem__(self, key: str) -> None:
        data = self._read()
        self.modified = True
        del data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __contains__(self, key: object) -> bool:
        return key in self._read()

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            self.modified = True
            self._data[key] = default
            return default

    def pop(self, key: str, *default: Any) -> Any:
        self.modified = True
        try:
            value = self[key]
        except KeyError:
            if default:
                return default[0]
            raise
        del self._data[key]
        return value

    def popitem(self) -> tuple[str, Any]:
        data = self._read()
        self.modified = True
        while data:
            key = next(reversed(data))
            try:
                return key, self.pop(key)
            except KeyError:  # a corrupt value emptied the session
                data = self._data
        raise KeyError("popitem(): the session is empty")

    def clear(self) -> None:
        self._read()
        self.modified = True
        self._data.clear()

    def items(self) -> ItemsView[str, Any]:
        self._decode_all()
        return super().items()

    def values(self) -> ValuesView[Any]:
        self._decode_all()
        return super().values()

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` with the session's values (a shallow copy)."""
        return dict(self._decode_all())

    def __repr__(self) -> str:
        if self._loader is not None:
            return f"<{type(self).__name__} (not loaded) pending={self._data!r}>"
        return f"<{type(self).__name__} {self._decode_all()!r}>"

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (until the session's absolute end).

        Setting it loads the session: the cookie must be re-sent with its new lifetime.
        """
        return bool(self.get("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._read()
        self["_permanent"] = bool(value)

    @property
    def new(self) -> bool:  # type: ignore[override]
        """Whether the session is not (yet) in the store. Loads the session to know."""
        self._read()
        return self.record is None

    # -- lifecycle -------------------------------------------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new ID at the end of the request, keeping its data.

        The old ID stops working at once: a request still in flight with it saves nothing.
        Call it when a user logs in (or their privileges change) to defeat session fixation.
        """
        self._read()
        self.modified = True
        self._regenerate = True

    def destroy(self) -> None:
        """Delete the session from the store and expire its cookie. Call it at logout.

        The session is then new and empty; values set afterwards (a flash message, say) go
        into a fresh session with a fresh ID. Values written earlier in the same request stay
        readable until the request ends (Flask-Login's ``logout_user()`` leaves a flag for its
        ``after_request`` hook this way), but are saved only if written again after this call.

        .. versionchanged:: 0.1
            Values written before ``destroy()`` in the same request are readable until the end
            of the request.
        """
        self.accessed = True
        self.modified = True
        carried = self._written()
        if self._session_id is not None:
            self._destroy_id = self._session_id
        self._session_id = None
        self._loader = None
        self._data = dict(carried)
        self._carried = carried
        self._stored = {}
        self._originals = {}
        self.record = None
        self._regenerate = False
        self._login = None

    def login(self, user_id: str | int) -> None:
        """Bind the session to ``user_id`` at the end of the request: a new session ID (as
        :meth:`regenerate`), the user recorded for "your devices" and "log out everywhere",
        and the time of authentication (:attr:`authenticated_at`). The data is kept.

        ``user_id`` (``str(user_id)`` for an ``int``) must be 1 to 255 characters with no
        control character: any other raises :class:`~flask_serversession.errors.InvalidUserId`
        here, before anything is written.

        .. versionadded:: 0.1
        """
        user = check_user_id(str(user_id))
        self._read()
        self.modified = True
        self._regenerate = True
        self._login = user

    def logout(self) -> None:
        """End the session: the same as :meth:`destroy`.

        .. versionadded:: 0.1
        """
        self.destroy()

    @property
    def user_id(self) -> str | None:
        """The user this session is bound to by :meth:`login`, or ``None``. Loads the session."""
        self._read()
        if self._login is not None:
            return self._login
        return None if self.record is None else self.record.user_id

    @property
    def authenticated_at(self) -> datetime | None:
        """When the user last authenticated in this session (UTC), for "recent login" checks
        before sensitive actions; ``None`` if never. Loads the session."""
        self._read()
        if self._login is not None:
            return datetime.now(timezone.utc)
        seconds = client_info(self.record).get("auth")
        if not isinstance(seconds, (int, float)):
            return None
        return datetime.fromtimestamp(seconds, timezone.utc)

    @property
    def handle(self) -> str | None:
        """The opaque handle of this session for the management API (revoke, keep), or
        ``None`` while it is not stored. It is not the ID and cannot become a cookie."""
        if self._session_id is None or self._regenerate:
            return None
        return store_key(self._session_id)

    # -- for the interface -------------------------------------------------------------------------

    def start_saving(self) -> bool:
        """Whether the end of the request should save this session: not if loading it failed
        (the view got the error), nor twice (Flask calls ``save_session`` again for the error
        response when the first attempt raised)."""
        if self._failed or self._saved:
            return False
        self._saved = True
        return True

    def hand_over(self) -> Changes:
        """The session's changes as one value, for the interface to save. Values
        :meth:`destroy` kept for the rest of the request are dropped first, unless written
        again (replaced by another object) since."""
        for key, value in self._carried.items():
            if key in self._data and self._data[key] is value:
                del self._data[key]
        self._carried = {}
        return Changes(
            session_id=self._session_id,
            loaded=self._loader is None,
            record=self.record,
            values=self._data,
            stored=self._stored,
            originals=self._originals,
            destroy_id=self._destroy_id,
            ended=self._ended,
            rotate=self._regenerate,
            bind_user=self._login,
            origin=self._origin,
            cookie_pending=self._cookie_pending,
        )

    def destroyed(self) -> None:
        """The interface deleted the session :meth:`destroy` ended."""
        self._destroy_id = None

    def stored_as(self, session_id: str, record: Record) -> None:
        """The interface stored the session under ``session_id`` (created, regenerated)."""
        self._session_id = session_id
        self.record = record
        self._regenerate = False
        self._login = None

    def join(self, session_id: str, record: Record) -> None:
        """The session a plug-in made is already stored under ``session_id`` (a request sent at
        once from the same origin stored it first): compare every value with those it was made
        with, save only what this request changed, and send the cookie."""
        self._session_id = session_id
        self.record = record
        self._originals = {}
        self._cookie_pending = True


def client_info(record: Record | None) -> dict[str, Any]:
    """The client metadata kept with a stored session (``auth``, ``ip``, ``ua``), or ``{}``."""
    if record is None or record.info is None:
        return {}
    try:
        info = json.loads(record.info)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def current_session() -> ServerSideSession:
    """``flask.session`` typed as what it is here, for ``login()``, ``handle`` and friends.

    Raises :class:`~flask_serversession.errors.NotServerSideSession` (a :class:`RuntimeError`)
    if the app does not use Flask-ServerSession (or has no ``SECRET_KEY``, when Flask gives a
    null session).

    .. versionadded:: 0.1
    """
    from flask import session

    current = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(current, ServerSideSession):
        raise NotServerSideSession(
            "flask.session is not a server-side session: is ServerSession(app) set up, and"
            " SECRET_KEY set?"
        )
    return current
