"""Managing sessions: a user's devices, revoking one or all, counting, cleaning up.

Reached through the extension (``serversession.sessions_of(user_id)``) or the ``flask sessions``
command line. A session is named by its *handle*: the store's key for it, a SHA-256 of its ID.
The handle is safe to show (in a "your devices" page, in an admin's terminal): it is not the ID
and cannot be turned into a cookie. Revoking leaves a tombstone, so the revoked session is
refused on its very next request, on any worker.

What a store cannot do, it says: a store without a user index (Memcached) raises
:class:`~flask_serversession.errors.UnsupportedOperation` when asked for a user's sessions.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .config import Config
from .ids import check_user_id
from .interface import TOMBSTONE_SECONDS, ServerSessionInterface, is_auxiliary
from .session import client_info
from .stores import Record, Store, values_size

_HANDLE = re.compile(r"[A-Za-z0-9_-]{43}\Z")


@dataclass(frozen=True)
class SessionInfo:
    """What the management API tells about one live session."""

    #: The opaque handle to revoke it with.
    handle: str
    #: The user it is bound to (:meth:`ServerSideSession.login`), or ``None``.
    user_id: str | None
    created: datetime
    last_seen: datetime
    #: When it ends if unused (idle timeout), or at its absolute end, whichever is first.
    expires: datetime
    #: When the user last authenticated in it, if they did.
    authenticated_at: datetime | None
    #: Recorded at login when ``SESSION_RECORD_CLIENT`` is on.
    ip: str | None
    user_agent: str | None
    #: Serialized size of its values in bytes.
    size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings."""
        result: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            result[name] = value.isoformat() if isinstance(value, datetime) else value
        return result


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def session_info(handle: str, record: Record) -> SessionInfo:
    """The public view of one stored record."""
    info = client_info(record)
    auth = info.get("auth")
    return SessionInfo(
        handle=handle,
        user_id=record.user_id,
        created=_time(record.created),
        last_seen=_time(record.last_seen),
        expires=_time(min(record.expires, record.absolute_expires)),
        authenticated_at=_time(auth) if isinstance(auth, (int, float)) else None,
        ip=info.get("ip") if isinstance(info.get("ip"), str) else None,
        user_agent=info.get("ua") if isinstance(info.get("ua"), str) else None,
        size=sum(len(name) + len(text) for name, text in record.values.items()),
    )


def check_handle(handle: str) -> str:
    """``handle`` if it has a handle's shape; :class:`ValueError` otherwise."""
    if not isinstance(handle, str) or _HANDLE.match(handle) is None:
        # Not echoed: what was pasted may be a cookie or an ID, which must not reach a log.
        raise ValueError("not a session handle (43 characters of URL-safe base64)")
    return handle


class SessionManager:
    """The management operations on one app's store."""

    def __init__(self, config: Config, interface: ServerSessionInterface) -> None:
        self.config = config
        self.store: Store = config.store
        self._clock = interface

    def now(self) -> float:
        """The current time, from the same clock the sessions use."""
        return self._clock.clock()

    def sessions_of(self, user_id: str | int) -> list[SessionInfo]:
        """The live sessions of a user, the most recently used first."""
        found = self.store.sessions_of(check_user_id(str(user_id)), self.now())
        infos = [session_info(key, record) for key, record in found]
        return sorted(infos, key=lambda info: info.last_seen, reverse=True)

    def get(self, handle: str) -> SessionInfo | None:
        """One live session by handle, or ``None``."""
        record = self.store.load(check_handle(handle))
        if record is None or not record.is_live(self.now()):
            return None
        return session_info(handle, record)

    def revoke(self, handle: str) -> bool:
        """End a session now; ``False`` if there was no live session with that handle."""
        now = self.now()
        record = self.store.load(check_handle(handle))
        if record is None or not record.is_live(now):
            return False
        self.store.delete(handle, tombstone_until=now + TOMBSTONE_SECONDS)
        return True

    def revoke_user(self, user_id: str | int, keep: str | None = None) -> int:
        """End every session of a user except ``keep`` (a handle, e.g. ``session.handle`` to
        "log out everywhere else"); return how many were ended."""
        user = check_user_id(str(user_id))
        if keep is not None:
            check_handle(keep)
        now = self.now()
        ended = 0
        for key, _ in self.store.sessions_of(user, now):
            if key != keep:
                self.store.delete(key, tombstone_until=now + TOMBSTONE_SECONDS)
                ended += 1
        return ended

    def all(self, user_id: str | int | None = None) -> Iterator[SessionInfo]:
        """Every live session (of ``user_id`` if given), in the store's order."""
        if user_id is not None:
            yield from self.sessions_of(user_id)
            return
        for key, record in self._scan(self.now()):
            yield session_info(key, record)

    def _scan(self, now: float) -> Generator[tuple[str, Record], None, None]:
        """The store's scan without the records a plug-in keeps beside the sessions (a
        migration's forwarding records, for a few seconds): they are not sessions."""
        found = self.store.scan(now)
        try:
            for key, record in found:
                if not is_auxiliary(record):
                    yield key, record
        finally:
            close = getattr(found, "close", None)
            if close is not None:
                close()  # a scan left part-read frees its cursor now

    def revoke_all(self, progress: Callable[[int], None] | None = None) -> int:
        """End every live session; return how many.

        Streams: each session the store's :meth:`~flask_serversession.stores.Store.scan`
        lists is revoked (a tombstone, as :meth:`revoke` leaves) before the scan reads on, so
        memory stays bounded by one page of the scan however many sessions there are (but for
        ``memory://``, whose scan copies what it already holds). Calls
        ``progress(revoked_in_batch)`` after each ``SESSION_CLEANUP_BATCH_SIZE`` sessions and
        once for the last, partial batch.

        Every session live from the start to the end of the call is revoked, and counted
        once; sessions created while it runs (a login, a regenerated ID) may or may not be.

        If the store fails midway (:class:`~flask_serversession.errors.SessionStoreUnavailable`)
        or the call is interrupted, the error propagates after ``progress`` was told about the
        sessions revoked before it, so the sum of the ``progress`` calls is always how many
        were revoked (not counting the one whose revocation failed: it may or may not have
        landed). The sessions not reached are left as they were; calling it again finishes
        the job.
        """
        batch = self.config.cleanup_batch_size
        # Each session is revoked before the scan reads on; a store's scan never lists again a
        # session ended while it runs (see Store.scan), so none is revoked or counted twice.
        found = self._scan(self.now())
        total = pending = 0
        try:
            for key, _ in found:
                # The tombstone runs from when this session ends, not from when the run began:
                # a request that was in flight at that moment is told it ended meanwhile.
                self.store.delete(key, tombstone_until=self.now() + TOMBSTONE_SECONDS)
                total += 1
                pending += 1
                if pending == batch:
                    pending = 0
                    if progress is not None:
                        progress(batch)
        except BaseException:
            # The partial batch is reported before the error goes on: the caller can say how
            # many were revoked. (pending is reset before each call, so never counted twice.)
            if pending and progress is not None:
                progress(pending)
            raise
        finally:
            found.close()  # a scan left part-read frees its cursor now
        if pending and progress is not None:
            progress(pending)
        return total

    def count(self) -> int:
        """How many sessions are live."""
        return sum(1 for _ in self._scan(self.now()))

    def clear_expired(self, progress: Callable[[int], None] | None = None) -> int:
        """Remove expired sessions and tombstones in batches (``SESSION_CLEANUP_BATCH_SIZE``),
        calling ``progress(removed_in_batch)`` after each; return how many were removed. Does
        nothing on stores that expire entries natively."""
        if not self.store.capabilities.clear_expired:
            return 0
        batch = self.config.cleanup_batch_size
        now = self.now()
        total = 0
        while True:
            removed = self.store.clear_expired(now, batch, limit=batch)
            total += removed
            if progress is not None:
                progress(removed)
            if removed < batch:
                return total

    def stats(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Counts by age and user binding, and serialized sizes (as ``SESSION_MAX_SIZE`` counts
        them), of the live sessions. Calls ``progress(read_in_batch)`` after each
        ``SESSION_CLEANUP_BATCH_SIZE`` sessions read and once for the last, partial batch."""
        now = self.now()
        batch = self.config.cleanup_batch_size
        ages = {"under 1 hour": 0, "1 hour to 1 day": 0, "1 to 7 days": 0, "over 7 days": 0}
        sizes: list[int] = []
        users: set[str] = set()
        anonymous = 0
        for _, record in self._scan(now):
            age = now - record.created
            bucket = (
                "under 1 hour"
                if age < 3600
                else "1 hour to 1 day"
                if age < 86400
                else "1 to 7 days"
                if age < 7 * 86400
                else "over 7 days"
            )
            ages[bucket] += 1
            sizes.append(values_size(record.values))
            if record.user_id is None:
                anonymous += 1
            else:
                users.add(record.user_id)
            if progress is not None and len(sizes) % batch == 0:
                progress(batch)
        if progress is not None and len(sizes) % batch:
            progress(len(sizes) % batch)
        return {
            "count": len(sizes),
            "users": len(users),
            "anonymous": anonymous,
            "by_age": ages,
            "size_bytes": {
                "total": sum(sizes),
                "median": int(statistics.median(sizes)) if sizes else 0,
                "max": max(sizes, default=0),
            },
        }
