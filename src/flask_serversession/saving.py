"""What a session hands over at the end of a request, and the pure decision of what to do with it.

:class:`Changes` is one frozen value: the session's state (its ID, the record it was loaded
from, whether it must rotate, bind a user or be destroyed) and what it holds. :func:`decide_save`
turns it into the next :data:`SaveStep` without any store; the interface carries the step out,
and asks again when a step changed the session (a destroy that leaves values to save, a patch
that found the session gone, a join). :meth:`Changes.diff` finds what changed, serializing only
the values that may have: never one the view was not handed (:data:`NOT_DECODED`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from uuid import UUID

from markupsafe import Markup

if TYPE_CHECKING:
    from .stores import Record

#: Values of these types cannot change in place: if the object is the one loaded, it is unchanged.
_IMMUTABLE = (str, int, float, bool, type(None), bytes, Markup, UUID, datetime, date)


class _NotDecoded:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_DECODED"


#: In :attr:`Changes.values`: a value loaded but never read, so never handed to the view. It is
#: unchanged by construction; its text is in :attr:`Changes.stored`.
NOT_DECODED: Any = _NotDecoded()


class Origin(Protocol):
    """Where a session a plug-in made from something not ours came from (an old cookie, say).

    Requests sent at once with the same old cookie must end in one session: the first to save
    creates it under :meth:`claim_id`, the others find it there and join it.
    """

    def claim_id(self, now: float) -> str:
        """The ID every request from this origin agrees to store the session under."""
        ...


@dataclass(frozen=True)
class Diff:
    """What changed against what was loaded: ``changed`` (name -> serialized value), ``deleted``
    names, and ``serialized``, every value's serialized text (for the size checks)."""

    changed: dict[str, str]
    deleted: list[str]
    serialized: dict[str, str]


@dataclass(frozen=True)
class Changes:
    """A session's state and values as the request leaves them (see
    :meth:`~flask_serversession.session.ServerSideSession.hand_over`)."""

    #: The ID the session is stored under; ``None`` for a new (or destroyed) one.
    session_id: str | None
    #: Whether the values are known; ``False``: only assigned, never read (a patch suffices).
    loaded: bool
    #: The record it was loaded from, ``None`` if none was.
    record: Record | None
    #: The current values (before loading: only those assigned); :data:`NOT_DECODED` for
    #: those loaded but never read.
    values: Mapping[str, Any]
    #: Serialized values as loaded (or as a plug-in pre-filled them).
    stored: Mapping[str, str]
    #: The objects as decoded, to skip serializing immutable values nobody replaced.
    originals: Mapping[str, Any]
    #: The ID of a session :meth:`destroy` ended in this request, still to delete.
    destroy_id: str | None = None
    #: The store held a tombstone: the session was ended by a concurrent request.
    ended: bool = False
    #: A new ID is due (regenerate or login).
    rotate: bool = False
    #: The user to bind at save (login), else ``None``.
    bind_user: str | None = None
    #: Made by a plug-in from something not ours: created under the origin's claimed ID.
    origin: Origin | None = None
    #: The client does not hold ``session_id`` yet (a plug-in moved the session in): the
    #: response must carry the cookie.
    cookie_pending: bool = False

    @property
    def empty(self) -> bool:
        return not self.values

    def diff(self, serialize: Callable[[str, Any], str]) -> Diff:
        """Serialize what may have changed and compare it with what was loaded."""
        changed: dict[str, str] = {}
        serialized: dict[str, str] = {}
        originals = self.originals
        stored = self.stored
        for key, value in self.values.items():
            if value is NOT_DECODED or (
                key in stored and value is originals.get(key) and type(value) in _IMMUTABLE
            ):
                serialized[key] = stored[key]
                continue
            text = serialize(key, value)
            serialized[key] = text
            if stored.get(key) != text:
                changed[key] = text
        deleted = [key for key in stored if key not in self.values]
        return Diff(changed, deleted, serialized)


#: What the store must do next for a session at the end of a request:
#:
#: ``destroy``         delete the session :meth:`destroy` ended (then decide again: values set
#:                     afterwards go into a new session)
#: ``drop``            the session was ended meanwhile: write nothing, send no cookie
#: ``patch-unloaded``  assigned without reading: one patch, no load
#: ``skip``            new and empty: nothing stored, no cookie
#: ``create``          a new session under a new ID, and its cookie
#: ``create-or-join``  a session a plug-in made: created under its origin's ID, or joined
#: ``delete``          emptied (and bound to no user): deleted, its cookie too
#: ``regenerate``      the changes and a new ID in one patch, and the new cookie
#: ``patch``           what changed, if anything, in one patch
SaveStep = Literal[
    "destroy",
    "drop",
    "patch-unloaded",
    "skip",
    "create",
    "create-or-join",
    "delete",
    "regenerate",
    "patch",
]


def decide_save(changes: Changes) -> SaveStep:
    """The next step of saving ``changes``: a pure function, no store involved."""
    if changes.destroy_id is not None:
        return "destroy"
    if changes.ended and changes.bind_user is None:
        # (An explicit login on an ended session is never a resurrection: it gets a new one.)
        return "drop"
    if not changes.loaded:
        return "patch-unloaded"
    record = changes.record
    if record is None or changes.session_id is None:
        return _decide_new(changes)
    if changes.empty and changes.bind_user is None and record.user_id is None:
        # Emptied (e.g. by popping its last key): no record, no cookie, as Flask does. A
        # session bound to a user stays, values or not, until logout.
        return "delete"
    return "regenerate" if changes.rotate else "patch"


def _decide_new(changes: Changes) -> SaveStep:
    if changes.empty and changes.bind_user is None:
        return "skip"
    if changes.origin is None or changes.bind_user is not None:
        return "create"
    return "create-or-join"


def needs_cookie(changes: Changes) -> bool:
    """Whether the response must carry the session's cookie although no step sent one: the
    session was moved in by a plug-in under an ID the client does not hold."""
    return (
        changes.cookie_pending
        and changes.session_id is not None
        and changes.record is not None
        and not changes.ended
    )
