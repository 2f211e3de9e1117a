"""``memcached://``: sessions in Memcached, one item per session, on pymemcache.

URLs::

    memcached://host[:port]                          one server (port 11211 by default)
    memcached://host1:11211,host2:11211,[::1]:11212  several: keys spread by rendezvous hashing

Options in the query string: ``prefix`` (key prefix, default ``session:``), ``connect_timeout``
and ``timeout`` (seconds, default 5 each), ``max_pool_size`` (connections per server, default
unbounded), ``cas_attempts`` (tries of a contended patch, default 20). Any other option is a
:class:`~flask_serversession.errors.ConfigurationError`. Or pass a client you already have:
``MemcachedStore(PooledClient(("cache", 11211)))``; it must not carry a ``serde`` (the store moves
bytes only; pymemcache's pickle serde would let whoever can write to Memcached run code in your
app) nor ``ignore_exc`` (an outage must not read as an empty session), and several servers need
:class:`StrictHashClient` (see below).

Each session is one item under ``<prefix>{<store key>}``, a compact JSON document (the braces
keep our keys apart from Flask-Session's ``<prefix><session id>`` in a shared Memcached: no
Flask-Session ID holds a brace, so a cookie migrated from it never names one of ours)::

    {"v":{"user":"\\"alice\\""},"c":created,"s":last_seen,"e":expires,"a":absolute_expires,"u":"42",
     "i":"<client info>"}
    {"x":1,"e":until}                                   a tombstone (session ended on purpose)

Values are the serialized text as given (never pickle); ``u`` is present only for a bound user,
``i`` only when client metadata was kept at login.
The item's Memcached expiry follows the session's: ``min(expires, absolute_expires)`` minus the
caller's ``now``, so Memcached drops dead sessions itself and ``clear_expired`` does nothing. A
relative TTL above 30 days would be read by Memcached as a Unix timestamp (i.e. in 1970, gone at
once), so such TTLs are sent as the absolute time ``end + 1``. The tombstone
:meth:`MemcachedStore.delete` leaves gets no ``now`` from the contract: its expiry is sent as the
absolute time ``tombstone_until + 1``, so that Memcached's clock, not ours, decides when it goes
(a Memcached clock running ahead of the app's by more than a tombstone's life drops it early;
the session stays ended either way, as an absent session is never revived). The store never reads
the clock.

Per operation (the shape of :class:`~flask_serversession.stores.kv.KeyValueStore`): ``load`` is
one ``get``, or one ``gets`` plus one ``cas`` when a touch is due (a touch that loses a race is
skipped, the other writer refreshed the session anyway); ``create`` is one ``add``; ``patch`` is
``gets`` + ``cas``, retried with a short jittered backoff when another writer got in between, so
concurrent patches of different keys all land (ID regeneration adds one ``add`` of the new key
before the ``cas``: two steps, see :mod:`flask_serversession.stores.kv`); ``delete`` is one
``delete``, or one ``set`` of a tombstone.

Honest limits:

* **Eviction.** Memcached is a cache: under memory pressure it evicts items (least recently used
  first) before their time, and a restart loses all of them. An evicted session is simply gone:
  its user is logged out and starts a new, empty session. Give Memcached room (``-m``), watch its
  ``evictions`` counter, or use Redis or SQL when a logout on eviction is not acceptable.
* **No listing, no user index** (``Capabilities(by_user=False, scan=False)``): Memcached cannot
  enumerate keys, so listing sessions, counting them and revoking a user's sessions are not
  available on this store; management code asked for them raises
  :class:`~flask_serversession.errors.UnsupportedOperation` instead of answering wrongly.
  ``Record.user_id`` is still stored with the session.
* **Item size.** Memcached refuses items larger than its ``-I`` setting (1 MiB by default); a
  session that large raises :class:`~flask_serversession.errors.SessionDataError` naming its
  largest key. Keep ``SESSION_MAX_SIZE`` below ``-I``.
* **Far expiry.** Memcached's timestamps are signed 32-bit: items are kept at most until
  2038-01-19, whatever the session's lifetime.
* **Several servers, no failover.** A dead server makes the sessions it holds unavailable
  (HTTP 503), never silently remapped: pymemcache's ``HashClient`` would answer "miss" while it
  retries a failing server and then move its keys to the others, which turns an outage into
  empty sessions and, when the server comes back, can revive a session whose logout went to
  another server. :class:`StrictHashClient` is a ``HashClient`` without that failover.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import SplitResult

from pymemcache.client.base import PooledClient  # type: ignore[import-untyped]
from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from pymemcache.client.retrying import RetryingClient  # type: ignore[import-untyped]
from pymemcache.exceptions import (  # type: ignore[import-untyped]
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)
from pymemcache.serde import LegacyWrappingSerde  # type: ignore[import-untyped]

from ..errors import (
    ConfigurationError,
    SessionDataCorrupt,
    SessionDataError,
    SessionStoreUnavailable,
)
from .base import Capabilities, Record
from .helpers import (
    Option,
    ProcessGuard,
    capped_expires,
    check_values,
    option_defaults,
    parse_options,
)
from .kv import KeyValueStore

__all__ = ["MemcachedStore", "StrictHashClient"]

_T = TypeVar("_T")

DEFAULT_PORT = 11211
#: Memcached reads an expiry above this many seconds as a Unix timestamp.
RELATIVE_TTL_LIMIT = 30 * 24 * 3600
#: Memcached parses expiry times as signed 32-bit numbers.
_MAX_EXPTIME = 2**31 - 1
_DEFAULT_TIMEOUT = 5.0
#: Errors after which the connection, not the command, is known to be broken: a pooled
#: connection that outlived a server restart fails like this on its first use.
_DROPPED = (MemcacheUnexpectedCloseError, ConnectionResetError, BrokenPipeError)
_DROPPED_RETRIES = 2


class StrictHashClient(HashClient):  # type: ignore[misc]
    """pymemcache's :class:`~pymemcache.client.hash.HashClient` without its failover.

    The stock client, after a server fails, answers every command for that server with its
    default ("miss", "not stored") until ``retry_timeout`` passes, and after ``retry_attempts``
    failures moves the server's keys to the remaining servers. For a cache that is a fair trade;
    for sessions it turns an outage into empty sessions, and a logout written to the stand-in
    server is forgotten when the real one returns with the live session. Here every command goes
    to the server its key hashes to, and that server's errors are raised.

    Its failure bookkeeping is also not thread-safe; this class keeps none.

    .. versionadded:: 0.1
    """

    def __init__(self, servers: Any, **kwargs: Any) -> None:
        if kwargs.get("ignore_exc"):
            raise ConfigurationError("StrictHashClient never ignores errors (ignore_exc=True)")
        super().__init__(servers, **kwargs)

    def _safely_run_func(
        self, client: Any, func: Callable[..., Any], default_val: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return func(*args, **kwargs)

    def _safely_run_set_many(self, client: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        return client.set_many(values, *args, **kwargs)


class MemcachedStore(KeyValueStore):
    """Sessions in Memcached: one JSON item per session, native expiry, patches by CAS.

    ``client`` is a pymemcache client shared by every request thread, so it must be thread-safe:
    a :class:`~pymemcache.client.base.PooledClient`, or a :class:`StrictHashClient` with
    ``use_pooling=True`` for several servers (:meth:`from_url` builds these). A plain
    :class:`~pymemcache.client.base.Client` is accepted for single-threaded use.

    .. versionadded:: 0.1
    """

    capabilities = Capabilities(by_user=False, scan=False, clear_expired=False)
    #: The options of its URL's query string.
    url_options = (
        Option("prefix", str, "session:", "Key prefix (``SESSION_KEY_PREFIX`` otherwise)."),
        Option("connect_timeout", float, _DEFAULT_TIMEOUT, "Seconds to connect.", minimum=0),
        Option("timeout", float, _DEFAULT_TIMEOUT, "Seconds a command may take.", minimum=0),
        Option("max_pool_size", int, 0, "Connections per server (0: unbounded).", minimum=0),
        Option("cas_attempts", int, 20, "Tries of a contended patch.", minimum=1),
    )

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "session:",
        cas_attempts: int = 20,
        name: str | None = None,
    ) -> None:
        if client is None:
            raise ConfigurationError(
                "MemcachedStore needs a pymemcache client or a memcached://host URL;"
                " there is no default host"
            )
        _check_client(client)
        if not prefix.isascii() or not prefix.isprintable() or " " in prefix:
            raise ConfigurationError(
                f"the Memcached key prefix must be printable ASCII without spaces, got {prefix!r}"
            )
        if len(prefix) > 150:
            raise ConfigurationError("the Memcached key prefix is too long (over 150 characters)")
        if cas_attempts < 1:
            raise ConfigurationError(f"cas_attempts must be at least 1, got {cas_attempts!r}")
        self.client = client
        self.prefix = prefix
        self.cas_attempts = cas_attempts
        self.name = name or f"memcached ({type(client).__name__})"
        #: How many compare-and-swap races writes lost (and retried) since start: a measure of
        #: contention on single sessions, for monitoring.
        self.cas_conflicts = 0
        self._lock = threading.Lock()
        self._process = ProcessGuard()

    @classmethod
    def from_url(cls, url: SplitResult, key_prefix: str | None = None) -> MemcachedStore:
        """Build the store for ``memcached://host[:port][,host[:port]...][?option=value...]``."""
        shown = f"memcached://{url.netloc}"
        if "@" in url.netloc:
            raise ConfigurationError(
                f"SESSION_STORE: Memcached's text protocol has no authentication; remove the"
                f" credentials from {url.scheme}://...@{url.netloc.rpartition('@')[2]}"
            )
        if url.path not in ("", "/") or url.fragment:
            raise ConfigurationError(
                f"SESSION_STORE: a memcached:// URL has no path, got {url.geturl()!r}"
            )
        servers = _servers(url.netloc)
        given, _ = parse_options("Memcached", url.query, cls.url_options)
        options = {**option_defaults(cls.url_options), **given}
        if "prefix" not in given and key_prefix is not None:
            options["prefix"] = key_prefix
        connect_timeout, timeout = options["connect_timeout"], options["timeout"]
        max_pool_size = options["max_pool_size"] or None
        common: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "no_delay": True,
            "max_pool_size": max_pool_size,
            "default_noreply": False,
        }
        client: Any
        if len(servers) == 1:
            client = PooledClient(servers[0], **common)
        else:
            client = StrictHashClient(servers, use_pooling=True, **common)
        return cls(
            client,
            prefix=options["prefix"],
            cas_attempts=options["cas_attempts"],
            name=shown,
        )

    # -- plumbing ----------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"

    def _call(
        self, command: Callable[..., _T], *args: Any, retry: bool = True, **kwargs: Any
    ) -> _T:
        """Run one Memcached command, turning driver errors into ours.

        A connection that broke (a pooled connection that outlived a server restart) is retried
        on a fresh one: every command the store sends is safe to repeat (reads; ``add``/``cas``
        fail harmlessly the second time), except the one ``retry=False`` marks.
        """
        if self._process.forked():
            # Forked (gunicorn --preload): connections must not be shared across processes.
            self.client.close()
        attempt = 0
        while True:
            try:
                return command(*args, **kwargs)
            except _DROPPED as exc:
                if retry and attempt < _DROPPED_RETRIES:
                    attempt += 1
                    self._drop_idle_connections()
                    continue
                raise self._unavailable(exc) from exc
            except MemcacheServerError as exc:
                if "too large" in str(exc):
                    raise _TooLarge(str(exc)) from exc
                raise self._unavailable(exc) from exc
            except (MemcacheError, OSError) as exc:
                raise self._unavailable(exc) from exc
            except RuntimeError as exc:
                if "Too many objects" not in str(exc):
                    raise
                # pymemcache's pool refuses instead of waiting when max_pool_size is reached.
                raise self._unavailable(exc, "connection pool exhausted") from exc

    def _drop_idle_connections(self) -> None:
        """Close the idle pooled connections: when one broke because its server restarted,
        the others to that server are broken too, and the pool would hand them out one by one
        (each failing one request) before opening fresh ones."""
        clients = getattr(self.client, "clients", None)
        for each in clients.values() if isinstance(clients, dict) else (self.client,):
            pool = getattr(each, "client_pool", None)
            if pool is None:
                continue  # a plain Client reconnects by itself
            for _ in range(len(pool.free)):
                try:
                    idle = pool.get()  # the oldest idle connection, or a new unconnected one
                except RuntimeError:  # the pool is full of busy connections: nothing idle
                    break
                pool.destroy(idle)

    def _unavailable(
        self, exc: BaseException, reason: str | None = None
    ) -> SessionStoreUnavailable:
        return SessionStoreUnavailable(self.name, reason or f"{type(exc).__name__}: {exc}")

    def _write(self, command: Callable[..., _T], record: Record, *args: Any, **kwargs: Any) -> _T:
        """Run a command that stores ``record``; an item Memcached finds too large becomes a
        :class:`SessionDataError` naming the largest value."""
        try:
            return self._call(command, *args, noreply=False, **kwargs)
        except _TooLarge as exc:
            largest = max(record.values, key=lambda name: len(record.values[name]), default="")
            raise SessionDataError(
                largest,
                f"the stored session is larger than Memcached's item size limit (-I): {exc}",
            ) from None

    def _lost_race(self, attempt: int) -> None:
        with self._lock:
            self.cas_conflicts += 1
        # Full-jitter exponential backoff: 0-1 ms, 0-2 ms, 0-4 ms, ... capped at 0-20 ms (at
        # most about 0.3 s over 20 attempts). Measured with 8 threads patching one session
        # flat out, 12,000 patches: the worst patch lost 9 races in a row (13 with a 10 ms cap).
        time.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.02)))

    # -- the primitives of KeyValueStore -----------------------------------------------------------

    def _get(self, key: str) -> Record | None:
        data = self._call(self.client.get, self._key(key))
        return None if data is None else _decode(data)

    def _gets(self, key: str) -> tuple[Record | None, Any]:
        data, cas = self._call(self.client.gets, self._key(key))
        return (None if data is None else _decode(data)), cas

    def _add(self, key: str, record: Record, now: float) -> bool:
        expire = _exptime(_end(record), now)
        command = self.client.add
        return bool(self._write(command, record, self._key(key), _encode(record), expire=expire))

    def _cas(self, key: str, record: Record, token: Any, now: float, repeat: bool = True) -> bool:
        expire = _exptime(_end(record), now)
        item, doc = self._key(key), _encode(record)
        return bool(
            self._write(self.client.cas, record, item, doc, token, expire=expire, retry=repeat)
        )

    def _set(self, key: str, record: Record, now: float | None) -> None:
        expire = _exptime(_end(record), now)
        self._write(self.client.set, record, self._key(key), _encode(record), expire=expire)

    def _remove(self, key: str) -> None:
        self._call(self.client.delete, self._key(key), noreply=False)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        """Nothing to do: Memcached drops items when their time is over."""
        return 0

    def close(self) -> None:
        self.client.close()


class _TooLarge(Exception):
    """Memcached refused an item as too large."""


def _end(record: Record) -> float:
    """When the item holding ``record`` may go: the end of its idle or absolute expiry."""
    return capped_expires(record.expires, record.absolute_expires)


def _exptime(end: float, now: float | None) -> int:
    """Memcached's expiry for an item that must live until ``end``, ``now`` being the caller's
    time: seconds from now, or past 30 days an absolute Unix time, as Memcached reads them.

    Without ``now`` (a tombstone left by :meth:`MemcachedStore.delete`), ``end`` itself, as an
    absolute time: the store never reads the clock."""
    if now is None:
        return int(min(math.ceil(end) + 1, _MAX_EXPTIME))
    ttl = end - now
    if ttl <= 0:
        return 1  # already over: kept a moment, the reader enforces the expiry anyway
    # Memcached's clock ticks in whole seconds, so an item stored late in a tick expires up to a
    # second early: one more second keeps it until ``end`` (the reader enforces the exact end).
    seconds = math.ceil(ttl) + 1
    if seconds > RELATIVE_TTL_LIMIT:
        # end + 1 is now + seconds on the caller's clock, without reading the clock here.
        return int(min(math.ceil(end) + 1, _MAX_EXPTIME))
    return seconds


def _encode(record: Record) -> bytes:
    doc: dict[str, Any]
    if record.ended:
        doc = {"x": 1, "e": record.expires}
    else:
        doc = {
            "v": record.values,
            "c": record.created,
            "s": record.last_seen,
            "e": _end(record),
            "a": record.absolute_expires,
        }
        if record.user_id is not None:
            doc["u"] = record.user_id
        if record.info is not None:
            doc["i"] = record.info
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _decode(data: Any) -> Record:
    try:
        doc = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise SessionDataCorrupt(f"stored Memcached item is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SessionDataCorrupt("stored Memcached item is not a JSON object")
    if doc.get("x") == 1:
        return Record.tombstone(_time(doc, "e"))
    values = check_values(doc.get("v"), "the values of a stored Memcached item")
    user_id = doc.get("u")
    if user_id is not None and not isinstance(user_id, str):
        raise SessionDataCorrupt("stored Memcached item has a user id that is not a string")
    info = doc.get("i")
    if info is not None and not isinstance(info, str):
        raise SessionDataCorrupt("stored Memcached item has client info that is not a string")
    return Record(
        values,
        _time(doc, "c"),
        _time(doc, "s"),
        _time(doc, "e"),
        _time(doc, "a"),
        user_id,
        info=info,
    )


def _time(doc: dict[str, Any], field: str) -> float:
    value = doc.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SessionDataCorrupt(f"stored Memcached item lacks a time in {field!r}")
    return float(value)


def _servers(netloc: str) -> list[tuple[str, int]]:
    """``host[:port]`` pairs, comma-separated; IPv6 addresses in brackets."""
    servers = []
    for part in netloc.split(","):
        part = part.strip()
        if part.startswith("["):
            host, bracket, rest = part[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigurationError(f"SESSION_STORE: bad Memcached server {part!r}")
            port_text = rest[1:]
        else:
            host, _, port_text = part.partition(":")
        if not host:
            raise ConfigurationError(
                f"SESSION_STORE: a memcached:// URL needs a host for every server (there is no"
                f" default), got memcached://{netloc}"
            )
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ConfigurationError(f"SESSION_STORE: bad Memcached port in {part!r}")
        servers.append((host, port))
    return servers


def _check_client(client: Any) -> None:
    """Refuse clients that would turn errors into misses or unpickle what they read."""
    if isinstance(client, RetryingClient):
        raise ConfigurationError(
            "MemcachedStore: pass the client inside the RetryingClient; the store retries what"
            " is safe to repeat itself (a blind retry of a write could undo a logout)"
        )
    if isinstance(client, HashClient) and not isinstance(client, StrictHashClient):
        raise ConfigurationError(
            "MemcachedStore: pymemcache's HashClient answers 'miss' for a failing server and then"
            " moves its keys to other servers, which loses or revives sessions; use"
            " flask_serversession.stores.memcached.StrictHashClient(servers, use_pooling=True)"
        )
    inner = [client]
    if isinstance(client, HashClient):
        inner = list(client.clients.values())
    for each in inner:
        for method in ("get", "gets", "add", "cas", "set", "delete", "close"):
            if not callable(getattr(each, method, None)):
                raise ConfigurationError(
                    f"MemcachedStore needs a pymemcache client, got {type(each).__name__}"
                )
        if getattr(each, "ignore_exc", False):
            raise ConfigurationError(
                "MemcachedStore: the client has ignore_exc=True, which turns an outage into"
                " empty sessions; build it with ignore_exc=False"
            )
        serde = getattr(each, "serde", None)
        if not isinstance(serde, LegacyWrappingSerde) or (
            getattr(serde.deserialize, "__func__", None)
            is not LegacyWrappingSerde._default_deserialize
        ):
            raise ConfigurationError(
                "MemcachedStore: the client has a serde or deserializer; the store moves bytes"
                " only (a pickle serde would run code planted in Memcached): build it without one"
            )
