"""``redis://``: sessions in Redis or Valkey, standalone, with TLS, Sentinel or Cluster.

One hash per session, so a patch touches only the changed fields::

    session:{<store key>}   ":user" -> '"alice"'   ":cart" -> '[1,2,3]'   (values, ":" + name)
                            c created   s last seen   e idle expiry   a absolute expiry
                            u user id (when bound)    i client info (when recorded)
                            z bytes of the values     n how many values
                            x 1 (only in a tombstone)

The key's native TTL follows the session's expiry, so Redis removes dead sessions itself
(``clear_expired`` does nothing). The ``{...}`` hash tag keeps every key one operation needs in
one Cluster slot. A read is one round trip, a plain ``HGETALL``; when what it read shows
that the rate-limited touch is due (at most once per ``SESSION_TOUCH_INTERVAL`` per session),
a second one runs a small Lua script that checks again and refreshes the idle expiry, so a
session ended or expired meanwhile is never revived. (One script doing both would save that
rare second trip but cost every read the script's overhead.) Scripts are loaded once, called
by SHA, reloaded on ``NOSCRIPT`` after a restart or failover. A patch is one script too,
atomic, and never re-creates a session that is gone; it keeps the size and count of the values
in two fields, updated from the lengths (``HSTRLEN``) of the fields it changes only, so a size
or key limit costs what the patch changes, however large the session. Regenerating an ID takes
two steps (the two keys live in different Cluster slots), and binding a user also writes the
user's index (a sorted set), before the session.

URLs (``valkey://`` and ``valkeys://`` are accepted as synonyms)::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                                   TLS, as redis-py's own rediss://
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]

Options: ``prefix`` (key prefix, default ``session:``; ``SESSION_KEY_PREFIX`` sets it too),
``wait_replicas`` (after each write, wait until that many replicas have it, so a failover loses
nothing acknowledged; default 0), ``wait_timeout`` (seconds, default 1), ``read_retries``
(extra attempts for a failed read, default 1), and for ``redis://``/``rediss://`` any redis-py
connection option (``socket_timeout`` and ``socket_connect_timeout`` default to 5 seconds,
``max_connections``, ``ssl_ca_certs``, ...); Sentinel and Cluster URLs take the two timeouts.
Or pass a client you already have: ``RedisStore(redis.Redis(...))``, a ``RedisCluster``, a
Sentinel ``master_for(...)`` client, or their valkey-py twins.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, unquote

from ..errors import ConfigurationError, SessionDataCorrupt, SessionStoreUnavailable
from ._redis_lua import CREATE, INDEX_USER, PATCH, PRUNE_INDEX, TAKE, TOMBSTONE, TOUCH
from .base import Capabilities, Patch, Record, Store, Touch, values_size
from .helpers import Option, capped_expires, option_defaults, parse_options, redact, touch_due

_T = TypeVar("_T")

_DEFAULT_TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    try:
        import redis.exceptions

        errors.append(redis.exceptions.RedisError)
    except ImportError:  # pragma: no cover - a valkey-only install
        pass
    try:
        import valkey.exceptions  # type: ignore[import-not-found,unused-ignore]

        errors.append(valkey.exceptions.ValkeyError)
    except ImportError:
        pass
    # Socket-level failures that escape some client paths (cluster node discovery).
    errors.append(OSError)
    return tuple(errors)


class RedisStore(Store):
    """Sessions in Redis or Valkey: one hash per session, native expiry, atomic Lua patches."""

    capabilities = Capabilities(by_user=True, scan=True, clear_expired=False)
    #: The store's own options of its URL's query string; the others go to the client.
    url_options = (
        Option("prefix", str, "session:", "Key prefix (``SESSION_KEY_PREFIX`` otherwise)."),
        Option("wait_replicas", int, 0, "Replicas each write waits for.", minimum=0),
        Option("wait_timeout", float, 1.0, "Seconds to wait for them.", minimum=0),
        Option("read_retries", int, 1, "Extra attempts of a failed read.", minimum=0),
    )

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "session:",
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        read_retries: int = 1,
        name: str | None = None,
    ) -> None:
        if client is None:
            raise ConfigurationError("RedisStore needs a client or a URL; there is no default host")
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"SESSION_KEY_PREFIX must not contain braces (they make Cluster hash tags),"
                f" got {prefix!r}"
            )
        if wait_replicas and hasattr(client, "get_nodes"):
            raise ConfigurationError("wait_replicas is not supported with Redis Cluster")
        self.client = client
        self.prefix = prefix
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self.read_retries = read_retries
        self.name = name or f"redis ({type(client).__name__})"
        self._errors = _driver_errors()
        self._touch = client.register_script(TOUCH)
        self._create = client.register_script(CREATE)
        self._patch = client.register_script(PATCH)
        self._take = client.register_script(TAKE)
        self._tombstone = client.register_script(TOMBSTONE)
        self._index_user = client.register_script(INDEX_USER)
        self._prune_index = client.register_script(PRUNE_INDEX)

    @classmethod
    def from_url(cls, url: SplitResult, key_prefix: str | None = None) -> RedisStore:
        import redis

        given, raw = parse_options("Redis", url.query, cls.url_options, others=True)
        options = {**option_defaults(cls.url_options), **given}
        if "prefix" not in given and key_prefix is not None:
            options["prefix"] = key_prefix
        scheme = url.scheme.lower()
        if not url.hostname:
            raise ConfigurationError(
                f"SESSION_STORE: a {scheme}:// URL needs a host (there is no default)"
            )
        name = redact(url, query=False)
        rest = "&".join(f"{key}={value}" for key, value in raw.items())
        try:
            if scheme == "redis+sentinel":
                client = _sentinel_client(url, raw)
            elif scheme == "redis+cluster":
                client = _cluster_client(url, rest)
            else:
                base = "rediss" if scheme in ("rediss", "valkeys") else "redis"
                plain = url._replace(scheme=base, query=rest).geturl()
                client = redis.Redis.from_url(plain, **_with_timeouts(raw))
                # redis-py makes connections lazily; build one (not connected) so that an
                # unknown option fails now, at start-up, not on the first request.
                pool: Any = client.connection_pool
                pool.connection_class(**pool.connection_kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"SESSION_STORE: bad Redis URL {name!r}: {exc}") from None
        except _driver_errors() as exc:  # a Cluster client connects as it is built
            raise SessionStoreUnavailable(name, f"{type(exc).__name__}: {exc}") from exc
        return cls(client, name=name, **options)

    # -- plumbing ----------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"

    def _run(self, operation: Callable[[], _T], retries: int = 0) -> _T:
        attempt = 0
        while True:
            try:
                return operation()
            except self._errors as exc:
                if attempt < retries and _transient(exc):
                    attempt += 1
                    time.sleep(0.05 * attempt)
                    continue
                reason = f"{type(exc).__name__}: {exc}"
                raise SessionStoreUnavailable(self.name, reason) from exc

    def _written(self, result: _T) -> _T:
        """Wait for replicas when asked to, so a failover loses nothing acknowledged."""
        if self.wait_replicas:
            timeout_ms = int(self.wait_timeout * 1000)
            acked = self._run(lambda: self.client.wait(self.wait_replicas, timeout_ms))
            if int(acked) < self.wait_replicas:
                raise SessionStoreUnavailable(
                    self.name,
                    f"write reached {acked} of {self.wait_replicas} replicas in"
                    f" {self.wait_timeout} s",
                )
        return result

    # -- the contract ------------------------------------------------------------------------------

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        redis_key = self._key(key)
        data = self._run(lambda: self.client.hgetall(redis_key), self.read_retries)
        record = _record(_pairs(data)) if data else None
        if record is not None and touch_due(record, touch):
            assert touch is not None
            args = (
                _ms(touch.now),
                _ms(touch.expires),
                _ms(touch.if_seen_before),
                _ms(touch.expires_for(None)),
            )
            # Safe to repeat: once applied, last seen is no longer before if_seen_before.
            self._run(lambda: self._touch(keys=[redis_key], args=args), self.read_retries)
        return record

    def create(self, key: str, record: Record) -> bool:
        end = capped_expires(record.expires, record.absolute_expires)
        if record.user_id is not None:
            # Indexed first, with the session's expiry: until then a listing keeps the entry
            # even though the session is not written yet (see sessions_of).
            life = _to_ms(record.absolute_expires) - _to_ms(record.last_seen)
            self._add_to_index(record.user_id, key, _to_ms(end), life)
        args: list[str | int] = [_to_ms(end) - _to_ms(record.last_seen), *_fields(record)]
        redis_key = self._key(key)
        created = self._run(lambda: self._create(keys=[redis_key], args=args))
        return self._written(bool(created))

    def patch(self, key: str, patch: Patch) -> bool:
        if patch.new_key is not None:
            return self._move(key, patch)
        user = "-" if patch.user_id is None else patch.user_id
        info = "" if patch.info is None else patch.info
        args = [_ms(patch.now), _ms(patch.expires), user, info, *_changes(patch)]
        redis_key = self._key(key)
        expires, now = _to_ms(patch.expires), _to_ms(patch.now)
        if patch.user_id:
            # Indexed before it is bound, so a crash leaves at worst a stale index entry
            # (pruned when read once patch.expires has passed), never a bound session that
            # "log out everywhere" misses.
            self._add_to_index(patch.user_id, key, expires, expires - now)
        absolute = self._run(lambda: self._patch(keys=[redis_key], args=args))
        if absolute and patch.user_id:
            # The index lives as long as the longest session in it can.
            score = min(expires, int(absolute))
            self._add_to_index(patch.user_id, key, score, int(absolute) - now)
        return self._written(bool(absolute))

    def _move(self, key: str, patch: Patch) -> bool:
        """Regeneration: the old key becomes a tombstone (atomically with reading what it held),
        then the session is written under the new key. Two keys may live in two Cluster slots,
        so this is two steps; a crash between them loses the session, never revives it."""
        assert patch.new_key is not None
        old = self._key(key)
        args = [_ms(patch.now), _ms(patch.tombstone_until)]
        if patch.max_size is not None or patch.max_keys is not None:
            args += _changes(patch)  # checked before the old key is taken
        else:
            args += ("", "", "0")
        flat = self._run(lambda: self._take(keys=[old], args=args))
        record = _record(_flat_pairs(flat))
        if record is None:
            return False
        record.apply(patch)
        if not self.create(patch.new_key, record):
            raise SessionStoreUnavailable(self.name, "the new session key already exists")
        return True

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        redis_key = self._key(key)
        if tombstone_until is None:
            self._run(lambda: self.client.delete(redis_key))
        else:
            until = _ms(tombstone_until)
            self._run(lambda: self._tombstone(keys=[redis_key], args=[until]))
        self._written(None)

    # -- the user index and listing -------------------------------------------------------------

    def _user_key(self, user_id: str) -> str:
        # "user:", not the "u:" of the earlier set: a set left by a development version is
        # never read as a sorted set (WRONGTYPE); it expires by itself.
        digest = base64.urlsafe_b64encode(hashlib.sha256(user_id.encode()).digest())
        return f"{self.prefix}user:{{{digest.rstrip(b'=').decode()}}}"

    def _add_to_index(self, user_id: str, key: str, until_ms: int, life_ms: int) -> None:
        """Index ``key`` under ``user_id``: kept, bound or not, until ``until_ms`` at least
        (the session's expiry as the write that follows leaves it); the index lives for
        ``life_ms`` at least."""
        args = (key, until_ms, max(1, life_ms))
        user_key = self._user_key(user_id)
        self._run(lambda: self._index_user(keys=[user_key], args=args))

    def _records(self, keys: list[str]) -> list[Record | None]:
        """Read many sessions in one round trip (a pipeline; per node in a Cluster)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self._key(key))
            return list(pipe.execute())

        return [_record(_pairs(data)) for data in self._run(read, self.read_retries)]

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        user_key = self._user_key(user_id)
        read = self._run(
            lambda: self.client.zrange(user_key, 0, -1, withscores=True), self.read_retries
        )
        scores = {_text(member): score for member, score in read}
        keys = sorted(scores)
        found: list[tuple[str, Record]] = []
        stale: list[str | int] = []
        now_ms = _to_ms(now)
        for key, record in zip(keys, self._records(keys), strict=True):
            if record is not None and record.is_live(now) and record.user_id == user_id:
                found.append((key, record))
                continue
            score = int(scores[key])
            if record is not None and not record.is_live(now):
                # Ended or expired: never live again (no write revives a session, and a key
                # is never created twice), so it goes now, unless indexed again meanwhile.
                stale += (key, max(score, now_ms))
            elif score <= now_ms:
                # Absent, or bound to another user (or to none), and indexed with an expiry
                # that has passed. Before that it stays: it may be a login whose session is
                # not written yet (that comes after the index entry), or a bind to this user
                # under way; past it, that session can no longer be live, written or not.
                stale += (key, now_ms)
        if stale:
            self._run(lambda: self._prune_index(keys=[user_key], args=stale))
        return found

    def scan(self, now: float, page: int = 500) -> Iterator[tuple[str, Record]]:
        pattern = _glob_escape(self.prefix) + "{*"
        start = len(self.prefix) + 1
        # SCAN may return a key more than once (while Redis resizes its hash table): a page
        # holds each key once, and a key seen again in a later page has been read afresh, so a
        # session the caller ended meanwhile is no longer live and not listed again.
        batch: dict[str, None] = {}
        keys = self.client.scan_iter(match=pattern, count=page)  # lazily, node by node
        while (raw := self._run(lambda: next(keys, None))) is not None:
            batch[_text(raw)[start:-1]] = None
            if len(batch) == page:
                yield from self._live(list(batch), now)
                batch = {}
        yield from self._live(list(batch), now)

    def _live(self, keys: list[str], now: float) -> Iterator[tuple[str, Record]]:
        if not keys:
            return
        for key, record in zip(keys, self._records(keys), strict=True):
            if record is not None and record.is_live(now):
                yield key, record

    def close(self) -> None:
        self.client.close()


def _changes(patch: Patch) -> list[str]:
    """The scripts' arguments for a patch's changes: the max size and max keys ("" for none),
    how many values are set, the ``:name``/value pairs set, then the ``:name`` fields
    deleted."""
    args = [
        "" if patch.max_size is None else str(patch.max_size),
        "" if patch.max_keys is None else str(patch.max_keys),
        str(len(patch.set)),
    ]
    for name, text in patch.set.items():
        args += (":" + name, text)
    args += (":" + name for name in patch.delete)
    return args


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def _seconds(ms: str) -> float:
    return int(ms) / 1000


def _fields(record: Record) -> list[str]:
    fields = [
        "c",
        _ms(record.created),
        "s",
        _ms(record.last_seen),
        "e",
        _ms(capped_expires(record.expires, record.absolute_expires)),
        "a",
        _ms(record.absolute_expires),
    ]
    if record.user_id is not None:
        fields += ("u", record.user_id)
    if record.info is not None:
        fields += ("i", record.info)
    fields += ("z", str(values_size(record.values)), "n", str(len(record.values)))
    for name, text in record.values.items():
        fields += (":" + name, text)
    return fields


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _pairs(data: Any) -> dict[str, str]:
    try:
        return {name.decode(): value.decode() for name, value in data.items()}
    except AttributeError:  # a client made with decode_responses=True: text already
        return {_text(name): _text(value) for name, value in data.items()}


def _flat_pairs(flat: Any) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _record(fields: dict[str, str]) -> Record | None:
    if not fields:
        return None
    try:
        if "x" in fields:
            return Record.tombstone(_seconds(fields["e"]))
        values = {name[1:]: text for name, text in fields.items() if name.startswith(":")}
        return Record(
            values,
            _seconds(fields["c"]),
            _seconds(fields["s"]),
            _seconds(fields["e"]),
            _seconds(fields["a"]),
            fields.get("u"),
            info=fields.get("i"),
        )
    except (KeyError, ValueError) as exc:
        raise SessionDataCorrupt(f"stored session hash lacks or garbles {exc}") from None


def _transient(exc: BaseException) -> bool:
    """Worth one more try: the connection, not the command, failed."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "TimeoutError", "BusyLoadingError", "TryAgainError"})


def _with_timeouts(options: dict[str, str]) -> dict[str, Any]:
    return {name: value for name, value in _DEFAULT_TIMEOUTS.items() if name not in options}


def _hosts(url: SplitResult, default_port: int) -> list[tuple[str, int]]:
    """``host:port`` pairs of a URL that may name several, comma-separated."""
    hosts = []
    for part in url.netloc.rpartition("@")[2].split(","):
        host, colon, port = part.rpartition(":")
        if not colon:
            host, port = part, ""
        hosts.append((host, int(port) if port else default_port))
    return hosts


def _credentials(url: SplitResult) -> dict[str, str]:
    userinfo, at, _ = url.netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    result = {}
    if user:
        result["username"] = unquote(user)
    if colon:
        result["password"] = unquote(password)
    return result


def _sentinel_client(url: SplitResult, raw: dict[str, str]) -> Any:
    from redis import sentinel as sentinel_module

    Sentinel: Any = sentinel_module.Sentinel  # redis-py's class is untyped

    parts = [part for part in url.path.split("/") if part]
    if not parts:
        raise ConfigurationError(
            "SESSION_STORE: redis+sentinel:// needs the service name as path:"
            " redis+sentinel://host:26379/mymaster"
        )
    service = parts[0]
    db = int(parts[1]) if len(parts) > 1 else 0
    timeouts = {name: float(value) for name, value in raw.items() if name in _DEFAULT_TIMEOUTS}
    options = {**_DEFAULT_TIMEOUTS, **timeouts}
    extra = set(raw) - set(_DEFAULT_TIMEOUTS)
    if extra:
        raise ConfigurationError(
            f"SESSION_STORE: unknown redis+sentinel option(s): {', '.join(sorted(extra))}"
        )
    sentinel = Sentinel(_hosts(url, 26379), sentinel_kwargs=dict(options), **options)
    return sentinel.master_for(service, db=db, **_credentials(url))


def _cluster_client(url: SplitResult, rest: str) -> Any:
    from redis import cluster

    node: Any = cluster.ClusterNode
    nodes = [node(host, port) for host, port in _hosts(url, 6379)]
    options = dict(parse_qsl(rest))
    kwargs: dict[str, Any] = {
        name: float(options.pop(name, default)) for name, default in _DEFAULT_TIMEOUTS.items()
    }
    if options:
        raise ConfigurationError(
            f"SESSION_STORE: unknown redis+cluster option(s): {', '.join(sorted(options))}"
        )
    kwargs.update(_credentials(url))
    return cluster.RedisCluster(startup_nodes=nodes, **kwargs)
