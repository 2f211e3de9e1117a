"""Stand-ins the suite puts around a store: call counting, pause points, a settable clock."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..stores import Patch, Record, Store, Touch

HOUR = 3600.0
T0 = 1_800_000_000.0  # a fixed "now" for store tests, in 2027


class CountingStore(Store):
    """Wraps a store and counts calls per method in :attr:`calls`; :attr:`log` lists every
    ``(method, key)`` in order."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.name = inner.name

    def _count(self, method: str, key: str) -> None:
        self.calls[method] += 1
        self.log.append((method, key))

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        self._count("load", key)
        return self.inner.load(key, touch)

    def create(self, key: str, record: Record) -> bool:
        self._count("create", key)
        return self.inner.create(key, record)

    def patch(self, key: str, patch: Patch) -> bool:
        self._count("patch", key)
        return self.inner.patch(key, patch)

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        self._count("delete", key)
        self.inner.delete(key, tombstone_until)

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        self.calls["sessions_of"] += 1
        return self.inner.sessions_of(user_id, now)

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        self.calls["scan"] += 1
        return self.inner.scan(now)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        self.calls["clear_expired"] += 1
        return self.inner.clear_expired(now, batch_size, limit)

    def close(self) -> None:
        self.inner.close()

    @property
    def total(self) -> int:
        """All calls except cleanup, which runs after the response."""
        return sum(n for name, n in self.calls.items() if name != "clear_expired")


class PausingStore(Store):
    """Wraps a store and calls ``at(point)`` before and after each of its calls: the points
    where another client's calls can fall between this client's, for a store whose every
    method is one atomic step. (A store whose methods take several steps says where, see
    :meth:`StoreConformance.stepped`.)"""

    def __init__(self, inner: Store, at: Callable[[str], None]) -> None:
        self.inner = inner
        self.at = at
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.name = inner.name

    def _call(self, method: str, call: Callable[[], Any]) -> Any:
        self.at(f"before {method}")
        result = call()
        self.at(f"after {method}")
        return result

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        result: Record | None = self._call("load", lambda: self.inner.load(key, touch))
        return result

    def create(self, key: str, record: Record) -> bool:
        return bool(self._call("create", lambda: self.inner.create(key, record)))

    def patch(self, key: str, patch: Patch) -> bool:
        return bool(self._call("patch", lambda: self.inner.patch(key, patch)))

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        self._call("delete", lambda: self.inner.delete(key, tombstone_until))

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        found: list[tuple[str, Record]] = self._call(
            "sessions_of", lambda: self.inner.sessions_of(user_id, now)
        )
        return found

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        return self.inner.scan(now)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        return self.inner.clear_expired(now, batch_size, limit)

    def close(self) -> None:
        self.inner.close()


class Clock:
    """A settable clock for the session interface."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_in_threads(
    works: Iterable[Callable[[], None]], timeout: float = 60.0
) -> list[BaseException]:
    """Run each of ``works`` in a thread of its own, all at once, and wait for them; return
    the exceptions they raised (a thread's own failure would otherwise go unseen)."""
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors
