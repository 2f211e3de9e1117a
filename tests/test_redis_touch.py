"""The Redis store's touch, a second round trip after a plain read: what happens to the session
between the two must win (an end, an expiry, a newer refresh)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis_servers import standalone
from servers import ServerProcess

from flask_serversession.stores import Record, Touch
from flask_serversession.stores.redis import RedisStore

_T = TypeVar("_T")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with standalone(Path(tmp_path_factory.mktemp("redis-touch"))) as server:
        yield server


class BetweenTheTrips(RedisStore):
    """Runs ``between()`` after the read and before the touch script."""

    between: Callable[[], object] | None = None

    def _run(self, operation: Callable[[], _T], retries: int = 0) -> _T:
        result = super()._run(operation, retries)
        if self.between is not None:
            between, self.between = self.between, None
            between()
        return result


@pytest.fixture
def store(redis_server: ServerProcess) -> Iterator[BetweenTheTrips]:
    store = BetweenTheTrips(redis.Redis(port=redis_server.port), prefix=f"t{uuid.uuid4().hex}:")
    yield store
    store.close()


def _record(now: float, user_id: str | None = None) -> Record:
    return Record({"a": '"x"'}, now - 600, now - 600, now + 600, now + 3600, user_id)


def _touch(now: float) -> Touch:
    return Touch(now, now + 1200, now - 60)


def test_a_due_touch_refreshes_and_load_returns_the_record_as_read(
    store: BetweenTheTrips,
) -> None:
    now = time.time()
    assert store.create("k", _record(now))
    read = store.load("k", _touch(now))
    assert read is not None and read.last_seen == pytest.approx(now - 600, abs=0.001)
    after = store.load("k")
    assert after is not None
    assert after.last_seen == pytest.approx(now, abs=0.001)
    assert after.expires == pytest.approx(now + 1200, abs=0.001)


def test_a_session_ended_between_read_and_touch_stays_ended(store: BetweenTheTrips) -> None:
    now = time.time()
    assert store.create("k", _record(now))
    store.between = lambda: store.delete("k", tombstone_until=now + 30)
    assert store.load("k", _touch(now)) is not None  # read before the end
    after = store.load("k")
    assert after is not None and after.ended
    assert after.expires == pytest.approx(now + 30, abs=0.001)


def test_a_session_deleted_between_read_and_touch_is_not_recreated(
    store: BetweenTheTrips,
) -> None:
    now = time.time()
    assert store.create("k", _record(now))
    store.between = lambda: store.delete("k")
    store.load("k", _touch(now))
    assert store.load("k") is None
    assert store.client.exists(store._key("k")) == 0


def test_a_newer_refresh_between_read_and_touch_is_not_undone(store: BetweenTheTrips) -> None:
    now = time.time()
    assert store.create("k", _record(now))
    later = now + 5
    store.between = lambda: store.load("k", Touch(later, later + 1800, later - 60))
    store.load("k", _touch(now))
    after = store.load("k")
    assert after is not None
    assert after.last_seen == pytest.approx(later, abs=0.001)
    assert after.expires == pytest.approx(later + 1800, abs=0.001)


def test_an_expired_session_is_never_touched(store: BetweenTheTrips) -> None:
    now = time.time()
    assert store.create("k", Record({"a": '"x"'}, now - 600, now - 600, now + 2, now + 3600))
    store.load("k", _touch(now + 3))  # idled out at now + 2
    after = store.load("k")
    assert after is None or after.expires == pytest.approx(now + 2, abs=0.001)
