"""``memory://``: sessions in a dict of this process. For tests and development only.

Thread-safe, but every process has its own dict: under several workers a user's requests see
different sessions, and a restart forgets them all.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from urllib.parse import SplitResult

from ..errors import ConfigurationError
from .base import Capabilities, Patch, Record, Store, Touch
from .helpers import capped_expires, touch_due


class MemoryStore(Store):
    """Sessions in process memory, behind one lock."""

    capabilities = Capabilities(by_user=True, scan=True, clear_expired=True)
    name = "memory://"

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: SplitResult) -> MemoryStore:
        if url.netloc or url.path or url.query:
            raise ConfigurationError(
                f"SESSION_STORE: memory:// takes no options, got {url.geturl()!r}"
            )
        return cls()

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            found = _copy(record)
            if touch is not None and touch_due(record, touch):
                record.last_seen = touch.now
                record.expires = capped_expires(touch.expires, record.absolute_expires)
            return found

    def create(self, key: str, record: Record) -> bool:
        with self._lock:
            if key in self._records:
                return False
            self._records[key] = _copy(record)
            return True

    def patch(self, key: str, patch: Patch) -> bool:
        with self._lock:
            record = self._records.get(key)
            if record is None or not record.is_live(patch.now) or not patch.fits(record.values):
                return False
            if patch.new_key is not None:
                self._records[key] = Record.tombstone(patch.tombstone_until)
                self._records[patch.new_key] = record
            record.apply(patch)
            return True

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        with self._lock:
            if tombstone_until is None:
                self._records.pop(key, None)
            else:
                self._records[key] = Record.tombstone(tombstone_until)

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        with self._lock:
            return [
                (key, _copy(record))
                for key, record in self._records.items()
                if record.user_id == user_id and record.is_live(now)
            ]

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        with self._lock:
            live = [(key, _copy(r)) for key, r in self._records.items() if r.is_live(now)]
        return iter(live)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        with self._lock:
            dead = [
                key
                for key, record in self._records.items()
                if now >= record.expires or now >= record.absolute_expires
            ]
            if limit is not None:
                dead = dead[:limit]
            for key in dead:
                del self._records[key]
            return len(dead)


def _copy(record: Record) -> Record:
    return dataclasses.replace(record, values=dict(record.values))
