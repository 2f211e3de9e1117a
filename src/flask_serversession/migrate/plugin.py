"""The migration plug-in: resolves the cookies the core refused that are Flask-Session's or
Flask's own (see :class:`~flask_serversession.interface.SessionPlugin`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Request

from .. import signals
from ..ids import new_session_id, store_key
from ..interface import TOMBSTONE_SECONDS, ServerSessionInterface
from ..serialization import loads_value
from ..session import ServerSideSession
from ..stores import Patch, Record
from .cookies import cookie_origin, flask_cookie_session, lifetime_seconds
from .forwarding import forward_record, forwarded_id, imported_id, moved_id
from .legacy import Unmigratable, flask_session_sid, read_legacy, serialize_values

if TYPE_CHECKING:
    from .compat import FlaskSessionSetup

logger = logging.getLogger("flask_serversession.migrate")


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
                raise Unmigratable("failed", "refused", rejection=reason or "corrupt")
            stored = serialize_values(values, config.max_size, config.max_keys)
        except Unmigratable as exc:
            signals.reject(app, exc.rejection)
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
                signals.reject(app, "unknown")
        except Unmigratable as exc:
            signals.reject(app, exc.rejection)
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
