"""The store contract: what a session store does, in four methods, plus optional capabilities.

A store moves text and times. It never sees cookies, session IDs (only their hashes, the
``key``), signatures or Python values. Each value is a JSON document (``str``) written by
:mod:`flask_serversession.serialization`; the store keeps it as is.

Times are POSIX timestamps (``float`` seconds) taken from one clock, the caller's: a store never
reads the clock itself, so the rules for expiry live in one place. Every method that decides
on expiry is given the time (``Touch.now``, ``Patch.now``, the ``now`` of listing and cleanup);
``create`` uses ``record.last_seen``. ``delete`` is given none: the tombstone it leaves carries
its own end, ``tombstone_until``, and a store whose server wants a relative lifetime passes that
end as an absolute time instead of reading the clock (Memcached). A server's own expiry
(Redis' ``PEXPIREAT``, Memcached's item expiry) follows its own clock; it only ever removes
what the caller's times already treat as over, give or take the skew between the two clocks,
and expiry is still enforced on read with the caller's time.

Rules every method keeps:

* A record is *live* while ``now < expires`` and ``now < absolute_expires`` and it is not a
  tombstone. A method that is given ``now`` treats a record that is not live as absent, and
  never makes it live again.
* A *tombstone* (``Record.ended``) marks a session that was ended on purpose (logout, ID
  regeneration) until its ``expires``. It lets a request that was in flight tell "ended
  meanwhile" (write nothing) from "expired long ago" (start a new session). ``load`` returns
  tombstones; nothing else ever changes them.
* ``expires`` passed in may exceed the record's ``absolute_expires``; the store keeps the smaller.
* Each method is one atomic step, ideally one round trip. Concurrent patches of different
  value names must both land. One exception is allowed, and each store states whether it
  takes it: a patch with ``new_key`` (ID rotation) changes two keys, which a store without
  multi-key transactions does in two steps. Either order is allowed, as long as a crash
  between the steps never leaves a session live under an ID that was ended, nor revives one:

  ====================  ===================================================================
  store                 ID rotation
  ====================  ===================================================================
  SQLite, SQL           one transaction: the move and the tombstone land together
  Redis/Valkey          two steps: the old key becomes a tombstone (returning what it held),
                        then the session is written under the new key; a crash between them
                        loses the session (the user starts a new one), never revives it
  Memcached, memory     two steps (:mod:`.kv`): the session is added under the new key, then
                        the old item is swapped for a tombstone by compare-and-set; a crash
                        between them leaves the old session live and unchanged, plus an
                        orphan copy under an ID never sent to anyone, which expires by itself
  ====================  ===================================================================
* A patch with ``max_size`` applies only if the record it leaves holds at most that many bytes
  of values (:func:`values_size`), decided in the same atomic step as the change; likewise
  ``max_keys`` for the number of values.
* Driver errors become :class:`~flask_serversession.errors.SessionStoreUnavailable`, raised
  ``from`` the driver's exception. Nothing is swallowed.

:mod:`flask_serversession.testing` checks all of this against a real instance of the store.
:mod:`.helpers` holds the parts of these rules that do not depend on the backend (is a touch
due, the capped expiry, checking a stored record, batched cleanup, keyset paging, URL options),
and :mod:`.kv` a base for stores on a compare-and-set key-value service.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import SplitResult

from ..errors import ConfigurationError, UnsupportedOperation


def value_size(name: str, text: str) -> int:
    """The bytes one value counts for against ``SESSION_MAX_SIZE`` and :attr:`Patch.max_size`:
    its name and its serialized text, both in UTF-8 (the text is ASCII JSON: one byte a
    character)."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size + (len(name) if name.isascii() else len(name.encode("utf-8", "surrogatepass")))


def values_size(values: Mapping[str, str]) -> int:
    """The size of a session's serialized values: the sum of :func:`value_size` over them."""
    return sum(value_size(name, text) for name, text in values.items())


@dataclass
class Record:
    """One stored session."""

    #: Session key (as in ``session[key]``) -> serialized value.
    values: dict[str, str]
    #: When the session was created.
    created: float
    #: When the session was last refreshed by a touch or a patch.
    last_seen: float
    #: Idle expiry: ``last_seen`` + idle timeout, capped by ``absolute_expires``.
    expires: float
    #: The hard end of the session, fixed at creation.
    absolute_expires: float
    #: The user the session belongs to, for the per-user index; ``None`` if anonymous.
    user_id: str | None = None
    #: A tombstone: the session was ended on purpose; kept until ``expires``.
    ended: bool = False
    #: Client metadata (when the user authenticated, IP address, user agent) as JSON text,
    #: opaque to the store; ``None`` if none was recorded.
    info: str | None = None

    def is_live(self, now: float) -> bool:
        """Whether the session is not a tombstone and has neither idled out nor reached its
        absolute end."""
        return not self.ended and now < self.expires and now < self.absolute_expires

    def apply(self, patch: Patch) -> None:
        """Apply ``patch`` to this record in memory (except ``new_key`` and ``max_size``, see
        :meth:`Patch.fits`): for stores that read, change and write back a whole record."""
        self.values.update(patch.set)
        for name in patch.delete:
            self.values.pop(name, None)
        self.last_seen = patch.now
        self.expires = min(patch.expires, self.absolute_expires)
        if patch.user_id is not None:
            self.user_id = patch.user_id or None
        if patch.info is not None:
            self.info = patch.info

    @classmethod
    def tombstone(cls, until: float) -> Record:
        """The record a store keeps in place of a session ended on purpose."""
        return cls({}, until, until, until, until, None, ended=True)


@dataclass(frozen=True)
class Touch:
    """A rate-limited refresh of a session's idle expiry, applied by :meth:`Store.load`.

    Applied only to a live record whose ``last_seen`` is before ``if_seen_before``: it then
    sets ``last_seen = now`` and ``expires = min(expires_for(record.user_id),
    absolute_expires)``: ``anonymous_expires`` for a record bound to no user when given, else
    ``expires``.
    """

    now: float
    expires: float
    if_seen_before: float
    #: The idle expiry of a record bound to no user (a shorter one: see
    #: ``SESSION_ANONYMOUS_IDLE_TIMEOUT``); ``None``: ``expires`` for every record.
    anonymous_expires: float | None = None

    def expires_for(self, user_id: str | None) -> float:
        """The idle expiry this touch gives a record bound to ``user_id``."""
        anonymous = self.anonymous_expires
        return self.expires if user_id is not None or anonymous is None else anonymous


@dataclass(frozen=True)
class Patch:
    """Changes to apply atomically to a live session by :meth:`Store.patch`."""

    #: Values to set: name -> serialized value.
    set: Mapping[str, str]
    #: Value names to remove (names absent from the record are ignored).
    delete: Collection[str]
    #: The current time: ``last_seen`` becomes this.
    now: float
    #: The new idle expiry (the store caps it by ``absolute_expires``).
    expires: float
    #: When not ``None``, the record moves to this key in the same step (ID regeneration),
    #: and a tombstone until ``tombstone_until`` takes its place under the old key.
    new_key: str | None = None
    tombstone_until: float = 0.0
    #: When not ``None``, the record's ``user_id`` becomes this (``""`` clears it).
    user_id: str | None = None
    #: When not ``None``, the record's ``info`` becomes this.
    info: str | None = None
    #: When not ``None``, the patch applies only if the record it leaves holds at most this
    #: many bytes of values, counted by :func:`values_size` (UTF-8 bytes of each name plus its
    #: serialized text); otherwise nothing changes and :meth:`Store.patch` returns ``False``.
    #: The session interface sets it to ``SESSION_MAX_SIZE`` on every patch that sets values.
    max_size: int | None = None
    #: When not ``None``, the patch applies only if the record it leaves holds at most this
    #: many values, decided in the same step; otherwise as for ``max_size``. The session
    #: interface sets it to ``SESSION_MAX_KEYS`` wherever it sets ``max_size``.
    max_keys: int | None = None

    def applied_to(self, values: Mapping[str, str]) -> dict[str, str]:
        """``values`` as this patch leaves them: ``set`` merged in, then ``delete`` removed."""
        result = dict(values)
        result.update(self.set)
        for name in self.delete:
            result.pop(name, None)
        return result

    def fits(self, values: Mapping[str, str]) -> bool:
        """Whether ``values`` (a live record's), changed by this patch, stay within
        ``max_size`` and ``max_keys``; always ``True`` without them. For stores that check in
        Python."""
        if self.max_size is None and self.max_keys is None:
            return True
        after = self.applied_to(values)
        return (self.max_size is None or values_size(after) <= self.max_size) and (
            self.max_keys is None or len(after) <= self.max_keys
        )


@dataclass(frozen=True)
class Capabilities:
    """What a store can do beyond the six core methods, declared and tested."""

    #: Find and revoke sessions by user (``Record.user_id`` is indexed).
    by_user: bool = False
    #: List all sessions (admin listing, stats).
    scan: bool = False
    #: ``clear_expired`` does real work; ``False`` for stores whose entries expire natively.
    clear_expired: bool = False


class Store(ABC):
    """Base class of session stores. Subclasses implement the four abstract methods.

    A store built from a URL is registered with
    :func:`flask_serversession.stores.register_store` and overrides :meth:`from_url`.
    """

    #: What this store can do beyond the core methods.
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: A short description for error messages and logs, never with credentials.
    name: str = "store"

    @classmethod
    def from_url(cls, url: SplitResult) -> Store:
        """Build a store from its URL, already split, for
        :func:`~flask_serversession.stores.store_from_url`.

        Configuration keys that only some stores use reach an override as optional keyword
        parameters it declares: ``key_prefix`` (``SESSION_KEY_PREFIX``) and ``create_table``
        (``SESSION_SQL_CREATE_TABLE``). The registry reads the override's signature and refuses,
        with a :class:`~flask_serversession.errors.ConfigurationError`, an option the store does
        not declare. Query-string options are parsed with
        :func:`flask_serversession.stores.helpers.parse_options`.

        This default refuses: a store without an override is built in code only.
        """
        raise ConfigurationError(f"SESSION_STORE: {cls.__name__} cannot be built from a URL")

    @abstractmethod
    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        """Return the record under ``key``, or ``None``; apply ``touch`` if it is due.

        The returned record is as it was read, before the touch, so that the caller can tell
        whether the touch applied (``record.last_seen < touch.if_seen_before``). Expired
        records may be returned (the caller enforces expiry); they are never touched.
        """

    @abstractmethod
    def create(self, key: str, record: Record) -> bool:
        """Store a new record; ``False`` (and no change) if ``key`` already exists."""

    @abstractmethod
    def patch(self, key: str, patch: Patch) -> bool:
        """Apply ``patch`` to the live record under ``key``; ``False`` if there is none.

        With ``patch.max_size``, also ``False`` (and no change at all, not even to the expiry)
        when the record after the patch would hold more than ``max_size`` bytes of values
        (:func:`values_size`): checked and applied in one atomic step, so that concurrent
        patches cannot together grow a session past the limit.
        """

    @abstractmethod
    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        """Remove the record under ``key`` if there is one.

        With ``tombstone_until``, leave a tombstone in its place (whether or not there was a
        record), so that requests still in flight see that the session ended.
        """

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        """The live sessions bound to ``user_id``, as ``(key, record)`` pairs, in no order.

        Needs ``capabilities.by_user``; a store without it raises
        :class:`~flask_serversession.errors.UnsupportedOperation`.
        """
        raise UnsupportedOperation(self.name, "by_user")

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        """Every live session, as ``(key, record)`` pairs, a page at a time; sessions created
        or ended while it runs may or may not be seen.

        A session live for the whole scan is listed; one the caller ends while the scan runs
        (e.g. revokes as it is listed) is not listed again. A store whose listing can repeat a
        key (Redis' ``SCAN``) keeps each key once per page and reads each page's records when
        it lists them. Counting what is listed may still count a repeated key twice on such a
        store: listing is for administration, not exact accounting.

        Needs ``capabilities.scan``; a store without it raises
        :class:`~flask_serversession.errors.UnsupportedOperation`.
        """
        raise UnsupportedOperation(self.name, "scan")

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        """Remove records and tombstones whose time is over at ``now``, ``batch_size`` per step
        so that no step holds locks for long; stop after ``limit``. Return how many were removed.

        Stores whose entries expire natively return 0 and set ``capabilities.clear_expired``
        to ``False``.
        """
        return 0

    def close(self) -> None:
        """Release connections. The store may be used again afterwards (it reconnects)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
