"""The compare-and-set key-value base: the contract for stores that keep each session as one item.

A store on a key-value service without server-side scripts or multi-key transactions (Memcached;
later MongoDB, DynamoDB) can still keep every rule of :mod:`.base` if the service can *add* an
item only when its key is free and *swap* an item only if it is unchanged since it was read
(compare-and-set). :class:`KeyValueStore` writes ``load``, ``create``, ``patch`` and ``delete``
once on those primitives; a subclass implements six small methods that each send one command:

* :meth:`~KeyValueStore._get`: read an item (Memcached ``get``);
* :meth:`~KeyValueStore._gets`: read an item and its compare-and-set token (``gets``);
* :meth:`~KeyValueStore._add`: write an item only if its key is free (``add``);
* :meth:`~KeyValueStore._cas`: replace an item only if its token still holds (``cas``);
* :meth:`~KeyValueStore._set`: write an item unconditionally (``set``);
* :meth:`~KeyValueStore._remove`: remove an item (``delete``).

What the base guarantees, and the round trips it costs:

* ``load``: one read; with a touch that is due, one ``cas`` more. A touch that loses a race is
  skipped: the other writer refreshed the session, or ended it, which must stay so.
* ``create``: one ``add``.
* ``patch``: ``gets`` + ``cas``, repeated (after :meth:`~KeyValueStore._lost_race`) while
  another writer gets in between, at most :attr:`~KeyValueStore.cas_attempts` times, so
  concurrent patches of different values all land. ``max_size`` and ``max_keys`` are checked
  on the record each ``gets`` read, so the ``cas`` that writes is the one that was checked.
* ID rotation (``patch.new_key``) is **two steps**, as two keys cannot change together: the
  session is written under the new key (``add``), then the old item is swapped for a tombstone
  (``cas``). Until the swap succeeds the old session stays live and unchanged; a crash between
  the steps leaves it so, plus an orphan item under a key whose ID was never sent to anyone
  (it expires by itself). An ended session is never revived: if the old item is found ended or
  gone, the copy under the new key is removed and the patch refused.
* ``delete``: one ``remove``, or one ``set`` of a tombstone.

Times: every write gets the caller's ``now`` to turn the record's expiry into the service's
own, except the tombstone ``delete`` leaves, for which the contract gives no ``now``: ``_set``
then gets ``None`` and must do without (Memcached: an absolute expiry time).

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

from ..errors import SessionStoreUnavailable
from .base import Patch, Record, Store, Touch
from .helpers import capped_expires, touch_due

__all__ = ["KeyValueStore"]


class KeyValueStore(Store):
    """Base of stores whose sessions are single items changed by compare-and-set.

    Subclasses implement the six primitives below; each is one command to the service and
    raises :class:`~flask_serversession.errors.SessionStoreUnavailable` on a driver error.

    .. versionadded:: 0.1
    """

    #: Tries of a contended patch before it gives up with
    #: :class:`~flask_serversession.errors.SessionStoreUnavailable`.
    cas_attempts: int = 20

    # -- the primitives ------------------------------------------------------------------------

    @abstractmethod
    def _get(self, key: str) -> Record | None:
        """The record under ``key``, or ``None``."""

    @abstractmethod
    def _gets(self, key: str) -> tuple[Record | None, Any]:
        """The record under ``key`` (or ``None``) and a token for :meth:`_cas`."""

    @abstractmethod
    def _add(self, key: str, record: Record, now: float) -> bool:
        """Write ``record`` under ``key`` if no item is there; whether it was written."""

    @abstractmethod
    def _cas(self, key: str, record: Record, token: Any, now: float, repeat: bool = True) -> bool:
        """Replace the item under ``key`` by ``record`` if it is unchanged since :meth:`_gets`
        gave ``token``; whether it was replaced. ``repeat=False``: never send it twice (not
        even on a broken connection), as a second try that found the first one landed would
        answer "changed"."""

    @abstractmethod
    def _set(self, key: str, record: Record, now: float | None) -> None:
        """Write ``record`` under ``key`` whatever is there. ``now`` is ``None`` for the
        tombstone of :meth:`delete`, which the contract gives no time."""

    @abstractmethod
    def _remove(self, key: str) -> None:
        """Remove the item under ``key``, if any."""

    def _lost_race(self, attempt: int) -> None:
        """Called before try number ``attempt`` (from 1) of a patch whose swap another writer
        beat: a place to count and back off."""
        return None

    # -- the contract --------------------------------------------------------------------------

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        if touch is None:
            return self._get(key)
        record, token = self._gets(key)
        if record is not None and touch_due(record, touch):
            expires = capped_expires(touch.expires_for(record.user_id), record.absolute_expires)
            touched = dataclasses.replace(record, last_seen=touch.now, expires=expires)
            self._cas(key, touched, token, touch.now)  # a lost race skips the touch
        return record

    def create(self, key: str, record: Record) -> bool:
        return self._add(key, record, record.last_seen)

    def patch(self, key: str, patch: Patch) -> bool:
        """Apply ``patch`` by :meth:`_gets` + :meth:`_cas`, tried again when another writer got
        in between; with ``patch.new_key``, in the two steps the module describes."""
        placed = False  # our copy exists under patch.new_key
        for attempt in range(self.cas_attempts):
            if attempt:
                self._lost_race(attempt)
            record, token = self._gets(key)
            if record is None or not record.is_live(patch.now) or not patch.fits(record.values):
                self._unplace(patch, placed)
                return False
            record.apply(patch)
            if patch.new_key is None:
                if self._cas(key, record, token, patch.now):
                    return True
                continue
            placed = self._place(patch.new_key, record, patch.now, placed)
            tombstone = Record.tombstone(patch.tombstone_until)
            # Not repeated on a broken connection: had the first swap landed, a second would
            # fail, and the loop would then take our own tombstone for a logout.
            if self._cas(key, tombstone, token, patch.now, repeat=False):
                return True
        self._unplace(patch, placed)
        raise SessionStoreUnavailable(
            self.name,
            f"a patch lost {self.cas_attempts} compare-and-swap races in a row on one session",
        )

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if tombstone_until is None:
            self._remove(key)
        else:
            self._set(key, Record.tombstone(tombstone_until), None)

    # -- ID rotation ---------------------------------------------------------------------------

    def _place(self, new_key: str, record: Record, now: float, placed: bool) -> bool:
        """Write the moved session under ``new_key``: ``add`` the first time, so that a key
        already taken is never overwritten, ``set`` on later tries (it is ours)."""
        if placed:
            self._set(new_key, record, now)
        elif not self._add(new_key, record, now):
            raise SessionStoreUnavailable(self.name, "the new session key already exists")
        return True

    def _unplace(self, patch: Patch, placed: bool) -> None:
        """Remove the copy written under the new key of a rotation that did not happen."""
        if placed and patch.new_key is not None:
            self._remove(patch.new_key)
