"""``memory://``: sessions in a dict of this process. For tests and development only.

Thread-safe, but every process has its own dict: under several workers a user's requests see
different sessions, and a restart forgets them all.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import SplitResult

from ..errors import ConfigurationError
from .base import Capabilities, Record
from .kv import KeyValueStore


class MemoryStore(KeyValueStore):
    """Sessions in process memory, behind one lock.

    Built on :class:`~flask_serversession.stores.kv.KeyValueStore`: each record carries a
    version, the compare-and-set token, so its ``load``, ``patch`` and ``delete`` are the ones a
    networked key-value store runs, and the conformance suite proves that base in-process.
    """

    capabilities = Capabilities(by_user=True, scan=True, clear_expired=True)
    name = "memory://"
    #: Races are lost only to other threads of this process, which never wait on a network:
    #: contention clears within a few tries, but a burst of threads may need more than 20.
    cas_attempts = 10_000

    def __init__(self) -> None:
        # key -> (record, version); the version changes with every write of the key.
        self._records: dict[str, tuple[Record, int]] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count()

    @classmethod
    def from_url(cls, url: SplitResult) -> MemoryStore:
        if url.netloc or url.path or url.query:
            raise ConfigurationError(
                f"SESSION_STORE: memory:// takes no options, got {url.geturl()!r}"
            )
        return cls()

    # -- the primitives of KeyValueStore -----------------------------------------------------

    def _get(self, key: str) -> Record | None:
        return self._gets(key)[0]

    def _gets(self, key: str) -> tuple[Record | None, Any]:
        with self._lock:
            entry = self._records.get(key)
        if entry is None:
            return None, None
        return _copy(entry[0]), entry[1]

    def _add(self, key: str, record: Record, now: float) -> bool:
        with self._lock:
            if key in self._records:
                return False
            self._records[key] = (_copy(record), next(self._versions))
            return True

    def _cas(self, key: str, record: Record, token: Any, now: float, repeat: bool = True) -> bool:
        with self._lock:
            entry = self._records.get(key)
            if entry is None or entry[1] != token:
                return False
            self._records[key] = (_copy(record), next(self._versions))
            return True

    def _set(self, key: str, record: Record, now: float | None) -> None:
        with self._lock:
            self._records[key] = (_copy(record), next(self._versions))

    def _remove(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _lost_race(self, attempt: int) -> None:
        time.sleep(0)  # let the thread that won finish

    # -- listing and cleanup -----------------------------------------------------------------

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        with self._lock:
            return [
                (key, _copy(record))
                for key, (record, _) in self._records.items()
                if record.user_id == user_id and record.is_live(now)
            ]

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        with self._lock:
            live = [(key, _copy(r)) for key, (r, _) in self._records.items() if r.is_live(now)]
        return iter(live)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        with self._lock:
            dead = [
                key
                for key, (record, _) in self._records.items()
                if now >= record.expires or now >= record.absolute_expires
            ]
            if limit is not None:
                dead = dead[:limit]
            for key in dead:
                del self._records[key]
            return len(dead)


def _copy(record: Record) -> Record:
    return dataclasses.replace(record, values=dict(record.values))
