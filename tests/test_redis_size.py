"""The size check of a Redis patch costs what the patch changes, not what the session holds
(issue 13, item 9): a session with many keys cannot make every write block Redis.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from servers import ServerProcess

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record, values_size
from flask_serversession.stores.redis import RedisStore

_counter = itertools.count()
NOW = 1_800_000_000.0


@pytest.fixture
def client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> RedisStore:
    return RedisStore(client, prefix=f"rsize{next(_counter)}:")


def _session(store: RedisStore, values: dict[str, str]) -> str:
    key = store_key(new_session_id())
    assert store.create(key, Record(values, NOW, NOW, NOW + 3600, NOW + 7200))
    return key


def _calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _patch(store: RedisStore, key: str, **changes: Any) -> bool:
    changes.setdefault("set", {})
    changes.setdefault("delete", ())
    changes.setdefault("max_size", 1 << 20)
    return store.patch(key, Patch(now=NOW + 1, expires=NOW + 3600, **changes))


def test_a_patch_reads_the_lengths_of_what_it_changes_only(
    store: RedisStore, client: redis.Redis
) -> None:
    """One patch of one key on a session of 5,000 keys asks Redis for the lengths of the
    fields it sets and deletes, not of every field (which made each write on a session of
    110,000 small keys block Redis for about 150 ms)."""
    key = _session(store, {f"k{i}": "1" for i in range(5_000)})
    assert _patch(store, key, set={"k1": '"x"'})  # a first patch may count the session once
    before = _calls(client, "hstrlen") + _calls(client, "hkeys")
    assert _patch(store, key, set={"k2": '"yy"', "new": "2"}, delete=("k3",))
    assert _calls(client, "hstrlen") + _calls(client, "hkeys") - before <= 3


def test_the_kept_total_stays_exact(store: RedisStore) -> None:
    """Sets, overwrites, deletes of present and absent keys, the same name set and deleted in
    one patch, UTF-8 names and values, a move to a new key: after each, the size the store
    checks against is the size of what it holds, so the limit applies exactly."""
    rng = random.Random(13)
    values = {f"k{i}": f'"{"v" * i}"' for i in range(20)}
    key = _session(store, dict(values))
    names = [f"k{i}" for i in range(30)] + ["ключ", "🔑"]
    for step in range(200):
        sets = {rng.choice(names): f'"{"é" * rng.randrange(5)}{step}"' for _ in range(3)}
        deletes = tuple(rng.choice(names) for _ in range(2))
        expected = Patch(sets, deletes, NOW, NOW).applied_to(values)
        size = values_size(expected)
        # Refused one byte under the size it would leave, applied at exactly that size.
        assert not _patch(store, key, set=sets, delete=deletes, max_size=size - 1)
        assert _patch(store, key, set=sets, delete=deletes, max_size=size)
        values = expected
        if step % 50 == 49:  # a regeneration carries the total to the new key
            new = store_key(new_session_id())
            assert store.patch(
                key, Patch({}, (), NOW + 1, NOW + 3600, new_key=new, tombstone_until=NOW + 60)
            )
            key = new
    record = store.load(key)
    assert record is not None and record.values == values


def test_a_session_stored_without_a_total_is_counted_once(
    store: RedisStore, client: redis.Redis
) -> None:
    """A session written before the total was kept is counted in full by its first patch,
    which keeps the total from then on."""
    key = _session(store, {"a": '"12345"', "b": "1"})
    client.hdel(store._key(key), "z", "n")
    assert not _patch(store, key, set={"c": "2"}, max_size=9)  # a1 b1 c1 + 7 + 1 + 1 = 12
    assert _patch(store, key, set={"c": "2"}, max_size=12)
    assert client.hget(store._key(key), "z") == b"12"
    assert not _patch(store, key, set={"d": "3"}, max_size=13)
    assert _patch(store, key, set={"d": "3"}, max_size=14)
