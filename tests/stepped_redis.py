"""A Redis store that pauses between its own steps, for the user-index interleaving tests.

The Redis store writes a user's index and the session in separate steps (the two keys live in
different Cluster slots), and reads the index, then the sessions, then repairs the index when
it lists a user's sessions. This subclass calls ``at(point)`` between those steps, so that a
test can run another client's operation to its end exactly there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_serversession.stores import Record
from flask_serversession.stores.redis import RedisStore


class SteppedRedisStore(RedisStore):
    """A second client on ``store``'s sessions (same connection pool and prefix) that calls
    ``at(point)`` around each write to a user's index and each read of the sessions a
    listing makes: the points where another client can come between its steps."""

    def __init__(self, store: RedisStore, at: Callable[[str], None]) -> None:
        super().__init__(store.client, prefix=store.prefix)
        self.at = at

    def _add_to_index(self, *args: Any, **kwargs: Any) -> None:
        self.at("before the index write")
        super()._add_to_index(*args, **kwargs)
        self.at("after the index write")

    def _records(self, keys: list[str]) -> list[Record | None]:
        self.at("after reading the index")
        records = super()._records(keys)
        self.at("after reading the sessions")
        return records
