"""Building a Memcached store: from URLs, good and bad, and from pymemcache clients, refusing
those that would hide errors or unpickle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from memcached_stores import HOUR, fresh_key, fresh_prefix, make_record
from pymemcache.client.base import Client, PooledClient  # type: ignore[import-untyped]
from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from pymemcache.client.retrying import RetryingClient  # type: ignore[import-untyped]
from servers import ServerProcess

from flask_serversession import ConfigurationError, store_from_url
from flask_serversession.stores import Patch
from flask_serversession.stores.memcached import MemcachedStore, StrictHashClient


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://", "needs a host"),
        ("memcached://?prefix=x", "needs a host"),
        ("memcached://127.0.0.1:11211,", "needs a host"),
        ("memcached://127.0.0.1?colour=red", "unknown Memcached option 'colour'"),
        ("memcached://127.0.0.1:port", "bad Memcached port"),
        ("memcached://127.0.0.1:70000", "bad Memcached port"),
        ("memcached://[::1]x:11211", "bad Memcached server"),
        ("memcached://user:secret@127.0.0.1", "no authentication"),
        ("memcached://127.0.0.1/sessions", "no path"),
        ("memcached://127.0.0.1?timeout=-1", "timeout must be"),
        ("memcached://127.0.0.1?max_pool_size=1.5", "max_pool_size must be"),
        ("memcached://127.0.0.1?cas_attempts=0", "cas_attempts"),
        ("memcached://127.0.0.1?prefix=a%20b", "prefix"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        store_from_url(url)
    assert "secret" not in str(info.value)


def test_good_urls() -> None:
    one = store_from_url("memcached://cache.internal?timeout=0.5&connect_timeout=2&prefix=app:")
    assert isinstance(one, MemcachedStore) and isinstance(one.client, PooledClient)
    assert one.client.server == ("cache.internal", 11211)
    assert (one.client.timeout, one.client.connect_timeout, one.prefix) == (0.5, 2.0, "app:")
    assert one.name == "memcached://cache.internal"
    several = store_from_url("memcached://a:11212,[::1]:11213,b?max_pool_size=8&cas_attempts=5")
    assert isinstance(several, MemcachedStore) and isinstance(several.client, StrictHashClient)
    assert sorted(several.client.clients) == ["::1:11213", "a:11212", "b:11211"]
    assert several.client.use_pooling and not several.client.ignore_exc
    assert several.cas_attempts == 5


class _JsonSerde:
    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        return value


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: None, "no default host"),
        (lambda: HashClient([("127.0.0.1", 1)]), "StrictHashClient"),
        (lambda: PooledClient(("127.0.0.1", 1), ignore_exc=True), "ignore_exc"),
        (lambda: Client(("127.0.0.1", 1), serde=_JsonSerde()), "serde"),
        (lambda: Client(("127.0.0.1", 1), deserializer=lambda k, v, f: v), "serde"),
        (lambda: object(), "needs a pymemcache client"),
        (lambda: RetryingClient(PooledClient(("127.0.0.1", 1))), "inside the RetryingClient"),
    ],
)
def test_clients_that_would_hide_errors_or_unpickle_are_refused(
    make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MemcachedStore(make())
    with pytest.raises(ConfigurationError, match="ignore_exc"):
        StrictHashClient([("127.0.0.1", 1)], ignore_exc=True)


def test_from_existing_client(memcached_server: ServerProcess) -> None:
    """A client built with pymemcache's defaults (noreply on by default for storage commands)
    still gets real answers: the store asks for replies on every write."""
    store = MemcachedStore(
        PooledClient(("127.0.0.1", memcached_server.port)), prefix=fresh_prefix()
    )
    key = fresh_key()
    now = time.time()
    assert store.create(key, make_record(now, user='"alice"'))
    assert not store.create(key, make_record(now, user='"mallory"'))
    assert store.patch(key, Patch({"cart": "[1]"}, (), now, now + HOUR))
    loaded = store.load(key)
    assert loaded is not None and loaded.values == {"user": '"alice"', "cart": "[1]"}
    assert "PooledClient" in store.name
    store.close()
