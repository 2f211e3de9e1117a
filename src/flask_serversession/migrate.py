"""Moving to Flask-ServerSession without logging anyone out: from Flask-Session, and from Flask's
own signed-cookie session.

Three ways in, all one-way and never executing pickle:

**Flask-Session's configuration.** :func:`flask_session_setup` reads Flask-Session 0.8's keys
(``SESSION_TYPE``, ``SESSION_REDIS``, ``SESSION_MEMCACHED``, ``SESSION_SQLALCHEMY`` and its
``_TABLE``/``_SCHEMA``/``_BIND_KEY``, ``SESSION_PERMANENT``, ``SESSION_USE_SIGNER``,
``SESSION_ID_LENGTH``, ``SESSION_CLEANUP_N_REQUESTS``): our sessions go to the same Redis, Memcached
or database (our own key layout or table, beside theirs), and the old store is kept as the
*legacy source* of a migration. Types we have no store for fail at start-up naming the closest.

**Live migration (lazy, on first use).** When ``SESSION_TYPE`` is given, migration is on unless
``SESSION_MIGRATE_FROM_FLASK_SESSION = False``. A request whose cookie is not ours but has the
shape of a Flask-Session ID (with ``SESSION_USE_SIGNER``: signed by Flask-Session's signer, salt
``flask-session``) gets a session whose loader, run only if the view touches the session:

1. looks for a record the bulk import left for this old ID (below) and moves it to a fresh ID;
2. otherwise reads ``SESSION_KEY_PREFIX + sid`` from the old store, decodes it (msgpack, then
   JSON, as Flask-Session does, both with msgspec), writes it into ours under a fresh 256-bit ID,
   deletes the old record, and the response carries our cookie.

A pickled record (Flask-Session < 0.7 wrote pickle; 0.8 still reads it) is never unpickled: it is
recognised by its first byte, skipped, counted in :attr:`MigrationStats.skipped` and logged; the
visitor starts a new session. A record we cannot read either is counted in ``failed``.

**Flask cookie sessions** (``SESSION_MIGRATE_COOKIE_SESSIONS = True``). A cookie that is not ours
is checked as Flask's :class:`~flask.sessions.SecureCookieSessionInterface` would (the app's
secret key and fallbacks, salt ``cookie-session``, max age ``PERMANENT_SESSION_LIFETIME``). A
valid one pre-fills a new session, stored (with our cookie) by the first request that uses the
session. A tampered or expired one is refused: a new empty session, and
:data:`~flask_serversession.signals.session_rejected` with reason ``"bad-signature"`` or
``"expired"``.

**Bulk import** (``flask sessions import --from flask-session``, :func:`import_sessions`). The
command cannot give browsers new cookies, and our IDs must be 256-bit random values the cookie
signer will accept, so an imported session cannot simply become an ordinary session. Each old
record is instead written into our store under ``store_key(imported_id(sid))``, where
``imported_id(sid) = "flask-session:" + sid``: a key only the holder of the old cookie can
derive (the store sees its SHA-256, never the old ID), which no cookie of ours can ever address
(our cookie IDs are 43 URL-safe characters, with no colon). The old record is then deleted. The
first request with the old cookie finds it (step 1 above) and moves it, atomically, to a fresh
ID (the store's regeneration ``Patch``, leaving a tombstone), and sends our cookie: from then on
it is an ordinary session. Unclaimed imported records expire as any session does.

**Requests in parallel with the same old cookie** (a page load's many requests, right after the
switch) all end in the same new session. The first to move it claims the move by creating, for
:data:`MOVE_GRACE` seconds, a forwarding record under ``store_key(moved_id(sid))`` that holds the
new ID sealed under the app's secret key (:func:`seal_forward`: a pad derived from the key, the
old ID and a random nonce, so that no two records share one, and a tag that authenticates it):
a dump of the store alone reveals no ID. A request that finds the old
record gone, or loses the claim, reads the new ID there and joins that session (whichever of
them gets to write the session first does; the others find it written). After the grace the old
cookie is worthless, as a cookie of a logged-out session is.

Sessions made from a Flask *cookie* session are claimed the same way, keyed by a digest of the
cookie (:func:`cookie_origin`): the first of the requests sent at once with it to save creates
the session under the forwarding's ID, and the others join it, each saving only what it changed.
A Flask cookie stays valid until it expires, so one replayed after the grace starts a session of
its own from the values it carries, as it would have under Flask.

Limits: Memcached cannot list its keys, so sessions there move only live.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, Request

from . import signals
from .errors import ConfigurationError, SessionDataError, SessionStoreUnavailable
from .ids import is_session_id, new_session_id, store_key
from .interface import AUXILIARY_INFO, TOMBSTONE_SECONDS, ServerSessionInterface
from .serialization import dumps_value, loads_value
from .session import ServerSideSession
from .stores import Patch, Record, Store, values_size

logger = logging.getLogger("flask_serversession.migrate")

#: The ID an imported Flask-Session record is keyed by: ``store_key(IMPORTED_PREFIX + sid)``.
IMPORTED_PREFIX = "flask-session:"
#: Flask-Session's default ``SESSION_ID_LENGTH``: bytes of ``secrets.token_urlsafe``.
_SID_BYTES = 32


def sid_shape(id_length: int = _SID_BYTES) -> re.Pattern[str]:
    """What a Flask-Session ID looks like, prefix excluded: ``secrets.token_urlsafe`` of
    ``id_length`` bytes (``SESSION_ID_LENGTH``), URL-safe base64 without padding, of exactly
    that length. Anything else cannot be one, and never reaches a store."""
    return re.compile(rf"[A-Za-z0-9_-]{{{-(-id_length * 4 // 3)}}}\Z")


#: SESSION_TYPE values we cannot serve, and what to use instead.
UNSUPPORTED_TYPES = {
    "filesystem": "filesystem: use the default SQLite store (leave SESSION_STORE unset, or"
    " SESSION_STORE = 'sqlite:///path/to/sessions.db'), which is one file shared by every process",
    "cachelib": "cachelib: use Redis (SESSION_TYPE = 'redis' with SESSION_REDIS, or SESSION_STORE"
    " = 'redis://host:6379/0'), or the default SQLite store for one machine",
    "mongodb": "mongodb: there is no MongoDB store; the closest is the SQL store (SESSION_TYPE ="
    " 'sqlalchemy', or SESSION_STORE = 'postgresql://...'), or Redis",
    "dynamodb": "dynamodb: there is no DynamoDB store; the closest is Redis (e.g. ElastiCache:"
    " SESSION_STORE = 'rediss://...'), or the SQL store on PostgreSQL",
}


def imported_id(sid: str) -> str:
    """The ID a session bulk-imported from Flask-Session waits under until its first use."""
    return IMPORTED_PREFIX + sid


#: The ID under which the request that moves a Flask-Session session leaves its new ID, sealed,
#: for requests that overlapped it: ``store_key(MOVED_PREFIX + sid)``.
MOVED_PREFIX = "flask-session-moved:"
#: Seconds that forwarding lasts: the parallel requests of one page load come well within.
MOVE_GRACE = 10.0
_FORWARD_VALUE = "to"


def moved_id(sid: str) -> str:
    """The ID of the forwarding record of the session moved from Flask-Session's ``sid``."""
    return MOVED_PREFIX + sid


def cookie_origin(cookie: str, request: Request) -> str:
    """What the forwarding of a session made from a Flask cookie session is keyed by: a digest
    of the cookie and of what tells one client from another (never a Flask-Session ID, which
    has no colon).

    Flask cookies are deterministic: two users whose sessions hold the same values, signed in
    the same second, send byte-identical cookies. Keyed by the cookie alone, the second would
    join the first's new session. The requests a join is for, one browser's parallel first
    requests, also share the client's address, the proxies' ``X-Forwarded-For`` chain, its
    ``User-Agent`` and its whole ``Cookie`` header; requests that differ in any of them are
    never joined (each starts a session of its own).
    """
    client = "\0".join(
        (
            cookie,
            request.remote_addr or "",
            request.headers.get("X-Forwarded-For", ""),
            request.headers.get("User-Agent", ""),
            request.headers.get("Cookie", ""),
        )
    )
    return "cookie:" + hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()


#: Bytes of the random nonce that makes each seal's pad its own, and of the tag that
#: authenticates a seal.
_NONCE_BYTES = 16
_TAG_BYTES = 16


def _keys(secret: str | bytes, origin: str, nonce: bytes) -> tuple[bytes, bytes]:
    """The pad key and the tag key of one seal: HMAC-SHA512 of the origin and a fresh nonce
    under the app's secret key, so that no two seals share a pad, even for one origin."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = b"flask-serversession moved\0" + nonce + b"\0" + origin.encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def _pad(pad_key: bytes, size: int) -> bytes:
    return hmac.new(pad_key, b"pad", hashlib.sha512).digest()[:size]


def _tag(tag_key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return hmac.new(tag_key, nonce + sealed, hashlib.sha256).digest()[:_TAG_BYTES]


def seal_forward(new_id: str, origin: str, secret: str | bytes) -> str:
    """``new_id`` sealed for the forwarding record of ``origin``, as hex: a random nonce, the
    ID XORed with a pad derived from the secret key, the origin and that nonce (so a pad is
    never used twice, even when one origin moves twice), and a tag over both (so a changed
    seal opens to nothing)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    pad_key, tag_key = _keys(secret, origin, nonce)
    raw = new_id.encode("ascii")
    sealed = bytes(a ^ b for a, b in zip(raw, _pad(pad_key, len(raw)), strict=True))
    return (nonce + sealed + _tag(tag_key, nonce, sealed)).hex()


def open_forward(sealed: str, origin: str, secret: str | bytes) -> str | None:
    """The new ID :func:`seal_forward` sealed, or ``None`` if ``sealed`` is not a seal of ours
    for ``origin`` (another key, another origin, or changed)."""
    try:
        raw = bytes.fromhex(sealed)
    except ValueError:
        return None
    if not _NONCE_BYTES + _TAG_BYTES < len(raw) <= _NONCE_BYTES + 64 + _TAG_BYTES:
        return None
    nonce, body, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:]
    pad_key, tag_key = _keys(secret, origin, nonce)
    if not hmac.compare_digest(tag, _tag(tag_key, nonce, body)):
        return None
    opened = bytes(a ^ b for a, b in zip(body, _pad(pad_key, len(body)), strict=True))
    try:
        new_id = opened.decode("ascii")
    except ValueError:
        return None
    return new_id if is_session_id(new_id) else None


#: The ``info`` of a forwarding record, which the management API leaves out of its listings.
_FORWARD_INFO = AUXILIARY_INFO


def forward_record(new_id: str, sid: str, secret: str | bytes, now: float) -> Record:
    """The forwarding record: live for :data:`MOVE_GRACE` seconds, holding the sealed ID."""
    sealed = json.dumps(seal_forward(new_id, sid, secret))
    end = now + MOVE_GRACE
    return Record({_FORWARD_VALUE: sealed}, now, now, end, end, info=_FORWARD_INFO)


def is_forwarding(record: Record) -> bool:
    """Whether ``record`` is a forwarding record, not a session."""
    return record.info == _FORWARD_INFO


def forwarded_id(record: Record | None, sid: str, secret: str | bytes, now: float) -> str | None:
    """The new ID a live forwarding record points to, else ``None``."""
    if record is None or not record.is_live(now):
        return None
    sealed = record.values.get(_FORWARD_VALUE)
    try:
        text = json.loads(sealed) if sealed is not None else None
    except ValueError:
        return None
    return open_forward(text, sid, secret) if isinstance(text, str) else None


# -- decoding Flask-Session records ----------------------------------------------------------------


class Unmigratable(Exception):
    """An old record or cookie session that cannot be moved. ``kind`` is ``"skipped"``
    (pickle, expired) or ``"failed"`` (unreadable, a value we cannot keep, too large), as
    :class:`MigrationStats` counts them; ``rejection`` is the reason
    :data:`~flask_serversession.signals.session_rejected` gives when a visitor's cookie led to
    it (``"corrupt"``, or ``"too-large"`` over ``SESSION_MAX_SIZE``)."""

    def __init__(self, kind: str, reason: str, rejection: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.rejection = rejection


def decode_record(data: bytes) -> dict[str, Any]:
    """Decode a Flask-Session 0.8 record (msgpack, or JSON): the session's values.

    Never unpickles: a record that is neither and starts with pickle's PROTO opcode raises
    :class:`Unmigratable` ``("skipped", ...)``; anything else unreadable ``("failed", ...)``,
    a record nested too deep for the decoder included.
    """
    decoded: Any = None
    try:
        import msgspec
    except ImportError:
        raise Unmigratable(
            "failed",
            "msgspec is not installed (pip install 'flask-serversession[migrate]'):"
            " cannot read the record",
        ) from None
    for decode in (msgspec.msgpack.decode, msgspec.json.decode):
        try:
            decoded = decode(data)
            break
        except (msgspec.DecodeError, RecursionError, MemoryError):
            continue
    else:
        if data[:1] == b"\x80":
            raise Unmigratable(
                "skipped", "pickled record (written by Flask-Session < 0.7): never unpickled"
            )
        raise Unmigratable("failed", "neither msgpack nor JSON (or nested too deep)")
    if not isinstance(decoded, dict) or not all(isinstance(key, str) for key in decoded):
        raise Unmigratable("failed", f"not a mapping with str keys ({type(decoded).__name__})")
    return decoded


def serialize_values(
    values: Mapping[str, Any], max_size: int, max_keys: int | None = None
) -> dict[str, str]:
    """``values`` serialized as ours are, held to the limits every session of ours is held to:
    :class:`Unmigratable` ``("failed", ...)`` for a value we cannot keep, or with rejection
    ``"too-large"`` over ``max_size`` (``SESSION_MAX_SIZE``) or ``max_keys``
    (``SESSION_MAX_KEYS``)."""
    if max_keys is not None and len(values) > max_keys:
        raise Unmigratable(
            "failed",
            f"{len(values):,} keys, over SESSION_MAX_KEYS of {max_keys:,}",
            rejection="too-large",
        )
    serialized: dict[str, str] = {}
    for name, value in values.items():
        try:
            serialized[name] = dumps_value(name, value)
        except (SessionDataError, RecursionError) as exc:
            raise Unmigratable("failed", str(exc)) from None
    size = values_size(serialized)
    if size > max_size:
        raise Unmigratable(
            "failed",
            f"{size:,} bytes serialized, over SESSION_MAX_SIZE of {max_size:,} bytes",
            rejection="too-large",
        )
    return serialized


def to_record(
    values: Mapping[str, Any],
    now: float,
    idle: float,
    absolute: float,
    expires: float | None,
    max_size: int,
    max_keys: int | None = None,
) -> Record:
    """Our record for ``values`` (see :func:`serialize_values`), idle expiry capped by the old
    record's own ``expires`` if known."""
    serialized = serialize_values(values, max_size, max_keys)
    end = now + idle if expires is None else min(now + idle, expires)
    return Record(serialized, now, now, end, now + absolute)


# -- the old stores ------------------------------------------------------------------------------


class LegacyStore:
    """Read access to a Flask-Session store: records keyed ``prefix + sid``."""

    name = "flask-session"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._sid = sid_shape()

    def expect_ids_of(self, id_length: int) -> None:
        """Take only IDs of ``id_length`` bytes (Flask-Session's ``SESSION_ID_LENGTH``)."""
        self._sid = sid_shape(id_length)

    def is_sid(self, sid: str) -> bool:
        """Whether ``sid`` has the shape of an ID Flask-Session issued (``SESSION_ID_LENGTH``)."""
        return self._sid.match(sid) is not None

    def get(self, sid: str) -> tuple[bytes, float | None] | None:
        """The record of ``sid`` and when it expires (POSIX time, if known); ``None`` if
        absent or expired."""
        raise NotImplementedError

    def delete(self, sid: str) -> None:
        raise NotImplementedError

    def scan(self) -> Iterator[tuple[str, bytes, float | None]]:
        """Every record: ``(sid, data, expires)``."""
        raise ConfigurationError(
            f"{self.name} cannot list its sessions: they move to Flask-ServerSession live, on"
            " first use"
        )

    def _failed(self, exc: Exception) -> SessionStoreUnavailable:
        return SessionStoreUnavailable(self.name, f"{type(exc).__name__}: {exc}")


class RedisLegacy(LegacyStore):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(prefix)
        self.client = client
        self.name = f"Flask-Session redis ({type(client).__name__})"

    def get(self, sid: str) -> tuple[bytes, float | None] | None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self.prefix + sid)
            pipe.pttl(self.prefix + sid)
            data, ttl = pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise self._failed(exc) from exc
        if isinstance(data, Exception):  # WRONGTYPE: one of ours, never a Flask-Session record
            return None
        if data is None:
            return None
        expires = time.time() + ttl / 1000 if isinstance(ttl, int) and ttl > 0 else None
        return bytes(data), expires

    def delete(self, sid: str) -> None:
        try:
            self.client.delete(self.prefix + sid)
        except Exception as exc:
            raise self._failed(exc) from exc

    def scan(self) -> Iterator[tuple[str, bytes, float | None]]:
        pattern = re.sub(r"([\\*?\[\]])", r"\\\1", self.prefix) + "*"
        start = len(self.prefix)
        for raw in self.client.scan_iter(match=pattern, count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            sid = key[start:]
            if not self.is_sid(sid):
                continue  # ours (``prefix{...}``) or someone else's
            found = self.get(sid)
            if found is not None:
                yield sid, found[0], found[1]


#: The longest key Memcached takes.
_MEMCACHED_KEY_BYTES = 250


class MemcachedLegacy(LegacyStore):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(prefix)
        self.client = client
        self.name = f"Flask-Session memcached ({type(client).__name__})"

    def get(self, sid: str) -> tuple[bytes, float | None] | None:
        key = self.prefix + sid
        if len(key.encode("utf-8")) > _MEMCACHED_KEY_BYTES:
            return None  # no such key can exist (Memcached would refuse the command)
        try:
            data = self.client.get(key)
        except Exception as exc:
            raise self._failed(exc) from exc
        if not isinstance(data, (bytes, bytearray)):
            return None
        return bytes(data), None

    def delete(self, sid: str) -> None:
        try:
            self.client.delete(self.prefix + sid)
        except Exception as exc:
            raise self._failed(exc) from exc


class SQLAlchemyLegacy(LegacyStore):
    """Flask-Session's table (``sessions``: ``session_id``, ``data``, ``expiry`` naive UTC)."""

    def __init__(self, engine: Any, prefix: str, table: str, schema: str | None) -> None:
        from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table

        super().__init__(prefix)
        self.engine = engine
        self.table = Table(
            table,
            MetaData(),
            Column("session_id", String(255)),
            Column("data", LargeBinary),
            Column("expiry", DateTime),
            schema=schema,
        )
        self.name = f"Flask-Session table {table!r}"

    @staticmethod
    def _expires(expiry: datetime | None) -> float | None:
        if expiry is None:
            return None
        return expiry.replace(tzinfo=timezone.utc).timestamp()

    def get(self, sid: str) -> tuple[bytes, float | None] | None:
        from sqlalchemy import select

        t = self.table
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(t.c.data, t.c.expiry).where(t.c.session_id == self.prefix + sid)
                ).first()
        except Exception as exc:
            raise self._failed(exc) from exc
        if row is None or row[0] is None:
            return None
        expires = self._expires(row[1])
        if expires is not None and expires <= time.time():
            return None
        return bytes(row[0]), expires

    def delete(self, sid: str) -> None:
        from sqlalchemy import delete

        try:
            with self.engine.begin() as conn:
                conn.execute(delete(self.table).where(self.table.c.session_id == self.prefix + sid))
        except Exception as exc:
            raise self._failed(exc) from exc

    def scan(self, page: int = 500) -> Iterator[tuple[str, bytes, float | None]]:
        from sqlalchemy import select

        t = self.table
        after = ""
        while True:  # pages in session_id order, so no read stays open while rows are deleted
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(t.c.session_id, t.c.data, t.c.expiry)
                    .where(t.c.session_id.startswith(self.prefix, autoescape=True))
                    .where(t.c.session_id > after)
                    .order_by(t.c.session_id)
                    .limit(page)
                ).all()
            for session_id, data, expiry in rows:
                sid = session_id[len(self.prefix) :]
                if data is not None and self.is_sid(sid):
                    yield sid, bytes(data), self._expires(expiry)
            if len(rows) < page:
                return
            after = rows[-1][0]


# -- configuration ---------------------------------------------------------------------------------


@dataclass
class MigrationStats:
    """Counts of what moved since start-up (live) or in one import."""

    moved: int = 0
    skipped: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


@dataclass
class FlaskSessionSetup:
    """What Flask-Session's keys say: our store (``None``: not implied), the old store to
    migrate from, and cookie and permanence rules."""

    store: Store | None = None
    legacy: LegacyStore | None = None
    use_signer: bool = False
    permanent: bool = False
    migrate_cookie_sessions: bool = False
    stats: MigrationStats = field(default_factory=MigrationStats)

    def plugin(self, interface: ServerSessionInterface) -> Migration | None:
        """The migration plug-in for ``interface``, if there is anything to migrate."""
        if self.legacy is None and not self.migrate_cookie_sessions:
            return None
        return Migration(interface, self)


def flask_session_setup(
    app: Flask, values: Mapping[str, Any], key_prefix: str | None
) -> FlaskSessionSetup:
    """Read Flask-Session's configuration keys; raise ConfigurationError at start-up."""
    setup = FlaskSessionSetup()
    raw_type = values.get("SESSION_TYPE")
    kind = str(raw_type).lower() if raw_type is not None else None
    if kind == "null":
        kind = None
    if kind in UNSUPPORTED_TYPES:
        raise ConfigurationError(f"SESSION_TYPE {UNSUPPORTED_TYPES[kind]}")
    prefix = key_prefix if key_prefix is not None else "session:"
    if kind == "redis":
        client = values.get("SESSION_REDIS")
        if client is None:
            raise ConfigurationError(
                "SESSION_TYPE 'redis' needs SESSION_REDIS (a redis.Redis client); there is no"
                " default host"
            )
        from .stores.redis import RedisStore

        setup.store = RedisStore(client, prefix=prefix)
        setup.legacy = RedisLegacy(client, prefix)
    elif kind == "memcached":
        client = values.get("SESSION_MEMCACHED")
        if client is None:
            raise ConfigurationError(
                "SESSION_TYPE 'memcached' needs SESSION_MEMCACHED (a pymemcache client)"
            )
        from .stores.memcached import MemcachedStore

        setup.store = MemcachedStore(client, prefix=prefix)
        setup.legacy = MemcachedLegacy(client, prefix)
    elif kind == "sqlalchemy":
        setup.store, setup.legacy = _sqlalchemy(app, values, prefix)
    elif kind is not None:
        raise ConfigurationError(
            f"SESSION_TYPE {raw_type!r} is not one of redis, memcached, sqlalchemy (or"
            f" Flask-Session's filesystem, cachelib, mongodb, dynamodb)"
        )

    migrate = values.get("SESSION_MIGRATE_FROM_FLASK_SESSION")
    if migrate is None:
        migrate = kind is not None
    if migrate and kind is None:
        raise ConfigurationError(
            "SESSION_MIGRATE_FROM_FLASK_SESSION needs SESSION_TYPE (and its client) to know"
            " where Flask-Session kept its sessions"
        )
    if not migrate:
        setup.legacy = None
    setup.use_signer = bool(values.get("SESSION_USE_SIGNER", False))
    permanent = values.get("SESSION_PERMANENT")
    setup.permanent = bool(permanent) if permanent is not None else kind is not None
    length = values.get("SESSION_ID_LENGTH")
    if length is not None:
        if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 256:
            raise ConfigurationError(
                f"SESSION_ID_LENGTH must be a whole number of bytes from 1 to 256, got {length!r}"
            )
        logger.info(
            "SESSION_ID_LENGTH=%r only tells which cookies are Flask-Session's: our session IDs"
            " are always 256 random bits",
            length,
        )
    if setup.legacy is not None:
        setup.legacy.expect_ids_of(_SID_BYTES if length is None else length)
    setup.migrate_cookie_sessions = bool(values.get("SESSION_MIGRATE_COOKIE_SESSIONS", False))
    return setup


#: The table our sessions go in when Flask-Session's SQLAlchemy keys say where the database is.
_OUR_TABLE = "serversession"


def _sqlalchemy(
    app: Flask, values: Mapping[str, Any], prefix: str
) -> tuple[Store, SQLAlchemyLegacy | None]:
    db = values.get("SESSION_SQLALCHEMY")
    if db is None:
        raise ConfigurationError(
            "SESSION_TYPE 'sqlalchemy' needs SESSION_SQLALCHEMY (your Flask-SQLAlchemy db,"
            " initialised on the app first)"
        )
    bind_key = values.get("SESSION_SQLALCHEMY_BIND_KEY")
    schema = values.get("SESSION_SQLALCHEMY_SCHEMA")
    table = values.get("SESSION_SQLALCHEMY_TABLE") or "sessions"
    try:
        with app.app_context():
            engine = db.engines[bind_key]
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise ConfigurationError(
            f"SESSION_SQLALCHEMY: no engine for bind key {bind_key!r} ({exc}); call"
            " db.init_app(app) before ServerSession(app)"
        ) from None
    if table == _OUR_TABLE:
        raise ConfigurationError(
            f"SESSION_SQLALCHEMY_TABLE {table!r} is the table Flask-ServerSession keeps its own"
            " sessions in: name the table Flask-Session used (its default is 'sessions')"
        )
    store: Store
    if engine.dialect.name == "sqlite":
        from .stores.sqlite import SQLiteStore

        store = SQLiteStore(engine.url.database or "", table=_OUR_TABLE)
    else:
        from .stores.sql import SQLStore

        store = SQLStore.from_flask_sqlalchemy(
            db, bind_key, app=app, table=_OUR_TABLE, schema=schema
        )
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        exists = inspect(engine).has_table(table, schema=schema)
    except SQLAlchemyError as exc:
        raise SessionStoreUnavailable(f"Flask-Session table {table!r}", str(exc)) from exc
    if not exists:
        # Flask-Session never ran here: nothing to move, and no cookie should make every
        # request read a table that is not there.
        logger.info("no Flask-Session table %r: there are no sessions to move from it", table)
        return store, None
    return store, SQLAlchemyLegacy(engine, prefix, table, schema)


# -- live migration --------------------------------------------------------------------------------


def flask_session_sid(cookie: str, setup: FlaskSessionSetup, keys: tuple[Any, ...]) -> str | None:
    """The Flask-Session ID in ``cookie``, or ``None`` if it is not one."""
    if setup.legacy is None:
        return None
    sid = cookie
    if setup.use_signer:
        from itsdangerous import BadSignature, Signer

        signer = Signer(list(reversed(keys)), salt="flask-session", key_derivation="hmac")
        try:
            sid = signer.unsign(cookie).decode("ascii", "replace")
        except BadSignature:
            return None
    return sid if setup.legacy.is_sid(sid) else None


def flask_cookie_session(
    cookie: str, keys: tuple[Any, ...], max_age: float
) -> tuple[dict[str, Any] | None, str | None]:
    """Flask's signed-cookie session in ``cookie``: ``(values, None)``, or ``(None, reason)``
    with reason ``"bad-signature"`` or ``"expired"``."""
    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import BadData, BadSignature, SignatureExpired, URLSafeTimedSerializer

    flask_interface = SecureCookieSessionInterface()
    serializer = URLSafeTimedSerializer(
        list(reversed(keys)),
        salt=flask_interface.salt,
        serializer=flask_interface.serializer,
        signer_kwargs={
            "key_derivation": flask_interface.key_derivation,
            "digest_method": flask_interface.digest_method,
        },
    )
    try:
        data = serializer.loads(cookie, max_age=int(max_age))
    except SignatureExpired:
        return None, "expired"
    except BadSignature:
        return None, "bad-signature"
    except (BadData, ValueError, TypeError, RecursionError):
        return None, "corrupt"  # signed by our key, yet unreadable (nested too deep, say)
    if not isinstance(data, dict):
        return None, "malformed"
    return data, None


def read_legacy(
    legacy: LegacyStore,
    sid: str,
    now: float,
    idle: float,
    absolute: float,
    max_size: int,
    max_keys: int,
    stats: MigrationStats,
) -> Record | None:
    """The Flask-Session record of ``sid`` as one of ours, or ``None`` if there is none.

    A record that cannot be moved raises :class:`Unmigratable` for the caller to report,
    once counted and logged. One that failed (unreadable, too large) is deleted from the old
    store, so that no later request pays for it again; a pickled one is left there, for a
    rollback to Flask-Session.
    """
    found = legacy.get(sid)
    if found is None:
        return None
    data, expires = found
    try:
        return to_record(decode_record(data), now, idle, absolute, expires, max_size, max_keys)
    except Unmigratable as exc:
        stats.count(exc.kind)
        logger.warning("a Flask-Session record was %s: %s", exc.kind, exc.reason)
        if exc.kind == "failed":
            legacy.delete(sid)
        raise


# -- bulk import -----------------------------------------------------------------------------------


def import_sessions(
    store: Store,
    legacy: LegacyStore,
    idle: float,
    absolute: float,
    max_size: int,
    progress: Callable[[MigrationStats], None] | None = None,
    max_keys: int | None = None,
    clock: Callable[[], float] = time.time,
) -> MigrationStats:
    """Copy every Flask-Session record into ``store`` under ``store_key(imported_id(sid))``
    and delete it from the old store; see the module docstring."""
    stats = MigrationStats()
    for sid, data, expires in legacy.scan():
        now = clock()
        try:
            if expires is not None and expires <= now:
                raise Unmigratable("skipped", "expired")
            record = to_record(
                decode_record(data), now, idle, absolute, expires, max_size, max_keys
            )
            if not store.create(store_key(imported_id(sid)), record):
                raise Unmigratable("failed", "already imported")
            legacy.delete(sid)
            stats.count("moved")
        except Unmigratable as exc:
            stats.count(exc.kind)
            logger.warning("a Flask-Session record was %s: %s", exc.kind, exc.reason)
        except SessionStoreUnavailable:
            raise
        except Exception as exc:  # one bad record never stops the import
            stats.count("failed")
            logger.error("importing a Flask-Session record failed: %s", exc)
        if progress is not None:
            progress(stats)
    return stats


def summary(stats: MigrationStats) -> str:
    return json.dumps({"moved": stats.moved, "skipped": stats.skipped, "failed": stats.failed})


def lifetime_seconds(value: Any) -> float:
    """``PERMANENT_SESSION_LIFETIME`` in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


# -- the plug-in -----------------------------------------------------------------------------------


class _CookieOrigin:
    """The origin of a session made from a Flask cookie session (see :func:`cookie_origin`):
    the requests sent at once with that cookie agree on one ID through a forwarding record."""

    def __init__(self, migration: Migration, origin: str, secret: str | bytes) -> None:
        self._migration = migration
        self._origin = origin
        self._secret = secret

    def claim_id(self, now: float) -> str:
        return self._migration.claim_move(self._origin, self._secret, now)


class Migration:
    """The migration plug-in of one app's session interface: it resolves the cookies the core
    refused that are Flask-Session's or Flask's own (see the module docstring)."""

    def __init__(self, interface: ServerSessionInterface, setup: FlaskSessionSetup) -> None:
        self.interface = interface
        self.setup = setup

    def open_foreign(
        self, app: Flask, request: Request, cookie: str, keys: tuple[Any, ...]
    ) -> ServerSideSession | None:
        """A session for a cookie that is Flask-Session's or Flask's own; ``None`` if it is
        neither."""
        setup = self.setup
        opened_at = self.interface.clock()
        if setup.legacy is not None:
            sid = flask_session_sid(cookie, setup, keys)
            if sid is not None:
                return ServerSideSession.moving_in(self._legacy_loader(app, sid, keys), opened_at)
        if setup.migrate_cookie_sessions:
            return self._from_cookie(app, request, cookie, keys, opened_at)
        return None

    def _from_cookie(
        self, app: Flask, request: Request, cookie: str, keys: tuple[Any, ...], opened_at: float
    ) -> ServerSideSession:
        config = self.interface.config
        max_age = lifetime_seconds(app.permanent_session_lifetime)
        values, reason = flask_cookie_session(cookie, keys, max_age)
        try:
            if values is None:
                raise Unmigratable("failed", "refused", rejection=str(reason))
            stored = serialize_values(values, config.max_size, config.max_keys)
        except Unmigratable as exc:
            signals.session_rejected.send(app, reason=exc.rejection)
            return ServerSideSession(None, None, opened_at)
        # A new session, pre-filled: stored with our cookie by the first request using it (or,
        # for requests of the same client sent with the same cookie at once, joined).
        origin = _CookieOrigin(self, cookie_origin(cookie, request), keys[0])
        logger.info("a Flask cookie session becomes a server-side one when first used")
        return ServerSideSession.made_from(values, stored, origin, opened_at)

    def _legacy_loader(
        self, app: Flask, sid: str, keys: tuple[Any, ...]
    ) -> Callable[[ServerSideSession], None]:
        def load(session: ServerSideSession) -> None:
            self._load_legacy(app, session, sid, keys[0])

        return load

    def _load_legacy(
        self, app: Flask, session: ServerSideSession, sid: str, secret: str | bytes
    ) -> None:
        """Load a Flask-Session session into ours under a fresh ID: the one a bulk import left
        for ``sid``, else the record in Flask-Session's store; or, if a request that overlapped
        this one moved it already, the session it moved it to. An old record that cannot be
        moved is reported, and the visitor gets a new session."""
        try:
            moved = self._move_legacy(sid, secret)
            if moved is None:
                # Well-shaped, yet nowhere: forged, or expired in the old store.
                signals.session_rejected.send(app, reason="unknown")
        except Unmigratable as exc:
            signals.session_rejected.send(app, reason=exc.rejection)
            moved = None
        if moved is None:
            session.set_loaded(None, {}, {})
            return
        new_id, record = moved
        values = {name: loads_value(text) for name, text in record.values.items()}
        session.set_loaded(record, dict(record.values), values, session_id=new_id)

    def _read_source(self, sid: str, now: float) -> tuple[Record | None, bool]:
        """The record to move for ``sid`` (``None``: none), and whether a bulk import left it."""
        interface = self.interface
        config = interface.config
        setup = self.setup
        assert setup.legacy is not None
        imported = interface.store.load(store_key(imported_id(sid)))
        if imported is not None and imported.is_live(now):
            return imported, True
        source = read_legacy(
            setup.legacy,
            sid,
            now,
            config.idle_timeout,
            config.absolute_timeout,
            config.max_size,
            config.max_keys,
            setup.stats,
        )
        return source, False

    def _move_legacy(self, sid: str, secret: str | bytes) -> tuple[str, Record] | None:
        interface = self.interface
        store = interface.store
        now = interface.clock()
        source, was_imported = self._read_source(sid, now)
        if source is None:
            # Nothing (left) to move: a request that overlapped this one may have moved it.
            moved_to = self.forwarded(sid, secret, now)
            return None if moved_to is None else self._join(moved_to)
        new_id = self.claim_move(sid, secret, now)
        new_key = store_key(new_id)
        if was_imported:
            patch = Patch(
                {},
                (),
                now,
                now + interface.config.idle_timeout,
                new_key=new_key,
                tombstone_until=now + TOMBSTONE_SECONDS,
            )
            moved = store.patch(store_key(imported_id(sid)), patch)
        else:
            moved = store.create(new_key, source)
            assert self.setup.legacy is not None
            self.setup.legacy.delete(sid)
        if moved:
            self.setup.stats.count("moved")
            if not was_imported:
                logger.info("moved a Flask-Session session to Flask-ServerSession")
            return new_id, source
        return self._join(new_id)  # an overlapping request moved it first

    def _join(self, new_id: str) -> tuple[str, Record] | None:
        record = self.interface.live_record(new_id)
        return None if record is None else (new_id, record)

    def claim_move(self, origin: str, secret: str | bytes, now: float) -> str:
        """The ID a session moved from ``origin`` goes to: the first request to leave the
        forwarding record names it, every request that overlapped it reads it there."""
        new_id = new_session_id()
        record = forward_record(new_id, origin, secret, now)
        if self.interface.store.create(store_key(moved_id(origin)), record):
            return new_id
        return self.forwarded(origin, secret, now) or new_id

    def forwarded(self, origin: str, secret: str | bytes, now: float) -> str | None:
        """The ID the session moved from ``origin`` went to, while its forwarding lasts."""
        record = self.interface.store.load(store_key(moved_id(origin)))
        return forwarded_id(record, origin, secret, now)
