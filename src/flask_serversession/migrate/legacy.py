"""Flask-Session's stores, read-only: records decoded (never unpickled), held to our limits."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationError,
    ServerSessionError,
    SessionDataError,
    SessionStoreUnavailable,
)
from ..serialization import dumps_value
from ..signals import RejectionReason
from ..stores import Record, values_size

if TYPE_CHECKING:
    from .compat import FlaskSessionSetup

logger = logging.getLogger("flask_serversession.migrate")


#: Flask-Session's default ``SESSION_ID_LENGTH``: bytes of ``secrets.token_urlsafe``.
_SID_BYTES = 32


def sid_shape(id_length: int = _SID_BYTES) -> re.Pattern[str]:
    """What a Flask-Session ID looks like, prefix excluded: ``secrets.token_urlsafe`` of
    ``id_length`` bytes (``SESSION_ID_LENGTH``), URL-safe base64 without padding, of exactly
    that length. Anything else cannot be one, and never reaches a store."""
    return re.compile(rf"[A-Za-z0-9_-]{{{-(-id_length * 4 // 3)}}}\Z")


# -- decoding Flask-Session records ----------------------------------------------------------------


class Unmigratable(ServerSessionError):
    """An old record or cookie session that cannot be moved. ``kind`` is ``"skipped"``
    (pickle, expired) or ``"failed"`` (unreadable, a value we cannot keep, too large), as
    :class:`MigrationStats` counts them; ``rejection`` is the reason
    :data:`~flask_serversession.signals.session_rejected` gives when a visitor's cookie led to
    it (``"corrupt"``, or ``"too-large"`` over ``SESSION_MAX_SIZE``)."""

    def __init__(self, kind: str, reason: str, rejection: RejectionReason = "corrupt") -> None:
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
