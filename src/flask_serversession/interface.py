"""The bridge to Flask's request cycle: open the session lazily, save only what changed.

This is the only module that sees requests, responses and cookies. Per request it makes at most:
0 store calls if the view never touches ``session``; 1 to read (the load also refreshes the
idle expiry when due); 1 to save a change made without reading (a patch); 2 to read and change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Request, Response, has_request_context, request
from flask.sessions import SessionInterface

from . import migrate, signals
from .config import Config
from .errors import (
    SessionDataCorrupt,
    SessionStoreUnavailable,
    SessionTooLarge,
    SessionTooManyKeys,
)
from .ids import CookieSigner, new_session_id, store_key
from .serialization import dumps_value, loads_value
from .session import ServerSideSession
from .stores import Patch, Record, Touch
from .stores.base import value_size

logger = logging.getLogger("flask_serversession")

#: How long a session ended on purpose (logout, regeneration, revocation) leaves a tombstone in
#: the store, so that requests still in flight with its ID write nothing. Longer than any
#: request lasts. The tombstone's expiry minus this is when the session ended.
TOMBSTONE_SECONDS = 600.0
#: A request that began this soon after its session ended counts as in flight too: a browser
#: sends its parallel requests with the old cookie until the response that ended it arrives.
#: Later ones (a revoked device coming back) get a new session.
TOMBSTONE_GRACE = 5.0
#: Browsers cap cookie lifetimes at 400 days.
MAX_COOKIE_AGE = 400 * 24 * 3600.0
#: Tries of a patch the store refused as too large while it was within the limit when read.
_PATCH_ATTEMPTS = 3


class ServerSessionInterface(SessionInterface):
    """Flask's session interface, backed by a :class:`~flask_serversession.stores.Store`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = config.store
        self._signer_keys: tuple[Any, ...] = ()
        self._signer: CookieSigner | None = None
        self._next_cleanup = 0.0
        #: Where times come from; tests replace it to move time forward.
        self.clock: Callable[[], float] = time.time

    # -- opening -----------------------------------------------------------------------------------

    def open_session(self, app: Flask, request: Request) -> ServerSideSession | None:
        signer = self._get_signer(app)
        if signer is None:
            return None  # no SECRET_KEY: Flask's null session explains the problem on write
        session_id = None
        cookie = request.cookies.get(self.config.cookie_name)
        if cookie:
            session_id, reason = signer.unsign(cookie)
            if reason is not None:
                migrating = self._migrating_session(app, request, cookie)
                if migrating is not None:
                    return migrating
                # Never reaches the store: the visitor gets a new, empty session.
                signals.session_rejected.send(app, reason=reason)
        return ServerSideSession(self._loader(app), session_id, self.clock())

    def _migrating_session(
        self, app: Flask, request: Request, cookie: str
    ) -> ServerSideSession | None:
        """A session for a cookie that is not ours but Flask-Session's or Flask's own (see
        :mod:`flask_serversession.migrate`); ``None`` if it is neither."""
        setup = self.config.flask_session
        keys = self._signer_keys
        if setup.legacy is not None:
            sid = migrate.flask_session_sid(cookie, setup, keys)
            if sid is not None:
                session = ServerSideSession(self._loader(app), None, self.clock())
                session._loader = self._legacy_loader(app, sid)
                session._migrating = True
                return session
        if setup.migrate_cookie_sessions:
            max_age = migrate.lifetime_seconds(app.permanent_session_lifetime)
            values, reason = migrate.flask_cookie_session(cookie, keys, max_age)
            try:
                if values is None:
                    raise migrate.Unmigratable("failed", "refused", rejection=str(reason))
                stored = migrate.serialize_values(
                    values, self.config.max_size, self.config.max_keys
                )
            except migrate.Unmigratable as exc:
                signals.session_rejected.send(app, reason=exc.rejection)
                return ServerSideSession(self._loader(app), None, self.clock())
            # A new session, pre-filled: stored with our cookie by the first request using it
            # (or, for requests of the same client sent with the same cookie at once, joined:
            # see _save).
            session = ServerSideSession(self._loader(app), None, self.clock())
            session._data = values
            session._cookie_origin = migrate.cookie_origin(cookie, request)
            session._stored = stored
            logger.info("a Flask cookie session becomes a server-side one when first used")
            return session
        return None

    def _legacy_loader(self, app: Flask, sid: str) -> Any:
        def load(session: ServerSideSession) -> None:
            self._load_legacy(app, session, sid)

        return load

    def _load_legacy(self, app: Flask, session: ServerSideSession, sid: str) -> None:
        """Load a Flask-Session session into ours under a fresh ID: the one a bulk import left
        for ``sid``, else the record in Flask-Session's store; or, if a request that overlapped
        this one moved it already, the session it moved it to. An old record that cannot be
        moved is reported, and the visitor gets a new session."""
        try:
            moved = self._move_legacy(sid)
            if moved is None:
                # Well-shaped, yet nowhere: forged, or expired in the old store.
                signals.session_rejected.send(app, reason="unknown")
        except migrate.Unmigratable as exc:
            signals.session_rejected.send(app, reason=exc.rejection)
            moved = None
        if moved is None:
            session._set_loaded(None, {}, {})
            return
        new_id, record = moved
        values = {name: loads_value(text) for name, text in record.values.items()}
        session._session_id = new_id
        session._set_loaded(record, dict(record.values), values)

    def _move_legacy(self, sid: str) -> tuple[str, Record] | None:
        config = self.config
        setup = config.flask_session
        assert setup.legacy is not None
        store = self.store
        now = self.clock()
        imported_key = store_key(migrate.imported_id(sid))
        imported = store.load(imported_key)
        source = imported if imported is not None and imported.is_live(now) else None
        if source is None:
            source = migrate.read_legacy(
                setup.legacy,
                sid,
                now,
                config.idle_timeout,
                config.absolute_timeout,
                config.max_size,
                config.max_keys,
                setup.stats,
            )
        if source is None:
            # Nothing (left) to move: a request that overlapped this one may have moved it.
            moved_to = self._forwarded(sid, now)
            return None if moved_to is None else self._join_moved(moved_to, now)
        new_id = self._claim_move(sid, now)
        new_key = store_key(new_id)
        if source is imported:
            patch = Patch(
                {},
                (),
                now,
                now + config.idle_timeout,
                new_key=new_key,
                tombstone_until=now + TOMBSTONE_SECONDS,
            )
            if store.patch(imported_key, patch):
                setup.stats.count("moved")
                return new_id, source
        else:
            created = store.create(new_key, source)
            setup.legacy.delete(sid)
            if created:
                setup.stats.count("moved")
                logger.info("moved a Flask-Session session to Flask-ServerSession")
                return new_id, source
        return self._join_moved(new_id, now)  # an overlapping request moved it first

    def _claim_move(self, origin: str, now: float) -> str:
        """The ID a session moved from ``origin`` (see :mod:`~flask_serversession.migrate`) goes
        to: the first request to leave the forwarding record names it, every request that
        overlapped it reads it there."""
        new_id = new_session_id()
        record = migrate.forward_record(new_id, origin, self._signer_keys[0], now)
        if self.store.create(store_key(migrate.moved_id(origin)), record):
            return new_id
        return self._forwarded(origin, now) or new_id

    def _forwarded(self, origin: str, now: float) -> str | None:
        """The ID the session moved from ``origin`` went to, while its forwarding lasts."""
        record = self.store.load(store_key(migrate.moved_id(origin)))
        return migrate.forwarded_id(record, origin, self._signer_keys[0], now)

    def _join_moved(self, new_id: str, now: float) -> tuple[str, Record] | None:
        record = self.store.load(store_key(new_id))
        return (new_id, record) if record is not None and record.is_live(now) else None

    def _get_signer(self, app: Flask) -> CookieSigner | None:
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if keys != self._signer_keys or self._signer is None:
            self._signer = CookieSigner(keys)
            self._signer_keys = keys
        return self._signer

    def _loader(self, app: Flask) -> Any:
        def load(session: ServerSideSession) -> None:
            self._load(app, session)

        return load

    def _load(self, app: Flask, session: ServerSideSession) -> None:
        assert session._session_id is not None
        config = self.config
        now = self.clock()
        key = store_key(session._session_id)
        touch = Touch(now, now + config.idle_timeout, now - config.touch_interval)
        try:
            record = self.store.load(key, touch)
            if record is None or not record.is_live(now):
                session._set_loaded(None, {}, {}, ended=self._ended_meanwhile(session, record))
                return
            values = {name: loads_value(text) for name, text in record.values.items()}
        except SessionDataCorrupt as exc:
            # Not something we wrote (a planted payload, a half-migrated row): never trusted,
            # never executed, reported, and replaced by a new session.
            logger.error("dropping an unreadable stored session: %s", exc)
            signals.session_rejected.send(app, reason="corrupt")
            self.store.delete(key)
            session._set_loaded(None, {}, {})
            return
        session._set_loaded(record, record.values, values)

    @staticmethod
    def _ended_meanwhile(session: ServerSideSession, record: Record | None) -> bool:
        """Whether ``record`` is the tombstone of a session ended while this request was in
        flight (write nothing), rather than before it began (start afresh)."""
        if record is None or not record.ended:
            return False
        ended_at = record.expires - TOMBSTONE_SECONDS
        return session._opened_at < ended_at + TOMBSTONE_GRACE

    # -- saving ------------------------------------------------------------------------------------

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if not isinstance(session, ServerSideSession) or not session.accessed:
            return  # untouched: no store call, no cookie
        response.vary.add("Cookie")
        if session._failed or session._saved:
            return  # the load failed and the view got the error, or saved already
        session._saved = True
        try:
            if session._migrating and not session.is_loaded:
                session._load()  # a migrating session is moved before anything is written
            self._save(app, session, response)
            if session._migrating:
                self._send_new_cookie(app, session, response)
        except SessionStoreUnavailable as exc:
            self._respond_unavailable(app, exc, response)
        except SessionDataCorrupt as exc:
            # Found while saving (a patch re-read the record): the change is dropped, the
            # record reported, as when loading.
            logger.error("an unreadable stored session stopped a save: %s", exc)
            signals.session_rejected.send(app, reason="corrupt")
        self._schedule_cleanup(response)

    def _save(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        """Write what changed. A cookie is sent only with a new ID (a new or regenerated
        session) or a changed ``permanent``: a request in flight never re-sends an old ID."""
        config = self.config
        store = self.store
        now = self.clock()
        tombstone_until = now + TOMBSTONE_SECONDS
        session._drop_carried()  # values destroy() kept for the request's end are not saved
        if session._destroy_id is not None:
            store.delete(store_key(session._destroy_id), tombstone_until)
            signals.session_destroyed.send(app, session=session)
            session._destroy_id = None
            if not session._data:
                self._delete_cookie(app, response)
                return
        if session._ended and session._login is None:
            logger.info("a change to a session that was ended meanwhile was dropped")
            return
        # (An explicit login on an ended session is never a resurrection: it gets a new one.)

        if not session.is_loaded:
            # Assigned without reading: one patch, no load. The store checks the size of the
            # whole session as the patch leaves it (the assigned values alone are checked here
            # first, without a round trip).
            assert session._session_id is not None
            key = store_key(session._session_id)
            changed, _, serialized = session._changes(dumps_value)
            self._check_size(serialized)
            patch = Patch(
                changed,
                (),
                now,
                now + config.idle_timeout,
                max_size=config.max_size,
                max_keys=config.max_keys,
            )
            applied, record = self._patch(key, patch)
            if applied:
                return
            # Not live. Ended meanwhile (a tombstone): write nothing, send no cookie, so a
            # logout or a regeneration is never undone. Otherwise it expired or never was: the
            # values go into a new session.
            session._set_loaded(None, {}, {}, ended=self._ended_meanwhile(session, record))
            if session._ended:
                logger.info("a change to a session that was ended meanwhile was dropped")
            else:
                self._create(app, session, response, now)
            return

        record = session.record
        if record is None or session._session_id is None:
            if not session._data and session._login is None:
                return
            if session._cookie_origin is None or session._login is not None:
                self._create(app, session, response, now)
                return
            record = self._create_or_join(app, session, response, now)
            if record is None:
                return  # created
            assert session._session_id is not None  # joined: saved below as a loaded session

        key = store_key(session._session_id)
        if not session._data and session._login is None and record.user_id is None:
            # Emptied (e.g. by popping its last key): no record, no cookie, as Flask does. A
            # session bound to a user stays, values or not, until logout.
            store.delete(key, tombstone_until)
            signals.session_destroyed.send(app, session=session)
            self._delete_cookie(app, response)
            return

        changed, deleted, serialized = session._changes(dumps_value)
        # A change that sets values is checked here and again by the store, against the session
        # as stored when the patch applies: requests that overlap, each within the limit, cannot
        # together take it over. A change that only deletes is never refused.
        max_size = max_keys = None
        if changed:
            self._check_size(serialized)
            max_size, max_keys = config.max_size, config.max_keys
        if session._regenerate:
            new_id = new_session_id()
            login = session._login
            patch = Patch(
                changed,
                deleted,
                now,
                now + config.idle_timeout,
                new_key=store_key(new_id),
                tombstone_until=tombstone_until,
                user_id=login,
                info=None if login is None else self._client_info(now),
                max_size=max_size,
                max_keys=max_keys,
            )
            if self._patch(key, patch)[0]:
                session._session_id = new_id
                session._regenerate = False
                session._login = None
                if login is not None:
                    record.user_id = login
                    record.info = patch.info
                self._set_cookie(app, session, response)
                signals.session_regenerated.send(app, session=session)
            return
        if changed or deleted:
            patch = Patch(
                changed,
                deleted,
                now,
                now + config.idle_timeout,
                max_size=max_size,
                max_keys=max_keys,
            )
            if self._patch(key, patch)[0] and "_permanent" in changed:
                self._set_cookie(app, session, response)  # the cookie's lifetime changed

    def _patch(self, key: str, patch: Patch) -> tuple[bool, Record | None]:
        """Apply ``patch``: ``(True, None)``, or ``(False, record)`` when there is no live
        session under ``key`` (``record`` as loaded then, to tell ended from expired; ``None``
        when the patch had no ``max_size`` and nothing was loaded).

        The store refuses a patch with ``max_size`` both when the session is not live and when
        it would be too large: the record, loaded to tell which, raises
        :class:`~flask_serversession.errors.SessionTooLarge` (naming the largest keys) if the
        patch would take it over the limit. If it would not (a request that overlapped shrank
        the session meanwhile), the patch is tried again, a bounded number of times.
        """
        store = self.store
        record: Record | None = None
        for _attempt in range(_PATCH_ATTEMPTS):
            if store.patch(key, patch):
                return True, None
            if patch.max_size is None:
                return False, None
            record = store.load(key)
            if record is None or not record.is_live(patch.now):
                return False, record
            self._check_size(patch.applied_to(record.values))  # raises if over the limit
        # Refused as too large each time, yet within the limit each time it was read: writers
        # racing on one session, like a lost compare-and-swap. The change is not saved.
        raise SessionStoreUnavailable(
            store.name,
            f"a patch within SESSION_MAX_SIZE was refused as too large {_PATCH_ATTEMPTS} times"
            " in a row (concurrent writers on one session)",
        )

    def _send_new_cookie(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        """After a migration, send our cookie unless the save sent (or deleted) one."""
        name = self.config.cookie_name + "="
        if session._session_id is None or session.record is None or session._ended:
            return
        if any(value.startswith(name) for value in response.headers.getlist("Set-Cookie")):
            return
        self._set_cookie(app, session, response)

    def _create_or_join(
        self, app: Flask, session: ServerSideSession, response: Response, now: float
    ) -> Record | None:
        """For a session made from a Flask cookie session: the first of the requests sent at
        once with that cookie names the new ID (a forwarding record, as a Flask-Session move
        does) and the session is created under it; a request that finds it created joins it
        and returns its record, ``session`` then reading as loaded from the cookie's values, so
        that only what this request changed is saved (and the cookie sent)."""
        origin = session._cookie_origin
        assert origin is not None
        new_id = self._claim_move(origin, now)
        if self._create(app, session, response, now, session_id=new_id):
            return None
        joined = self._join_moved(new_id, now)
        if joined is None:
            self._create(app, session, response, now)  # ended meanwhile: a session of its own
            return None
        record = joined[1]
        session._session_id = new_id
        session.record = record
        session._originals = {}  # compare every value with the cookie's (in _stored)
        # (The attempt to create made it permanent if SESSION_PERMANENT asks, as it did the
        # session joined: this request's cookie lasts as long as the others'.)
        session._migrating = True  # the response carries the cookie (save_session)
        return record

    def _create(
        self,
        app: Flask,
        session: ServerSideSession,
        response: Response,
        now: float,
        session_id: str | None = None,
    ) -> bool:
        """Store ``session`` as a new session and send its cookie. With ``session_id``, under
        that ID or not at all (``False``: a session exists under it)."""
        config = self.config
        if config.permanent and "_permanent" not in session._data:
            session._data["_permanent"] = True  # SESSION_PERMANENT: new sessions are permanent
        _, _, values = session._changes(dumps_value)
        self._check_size(values)
        login = session._login
        record = Record(
            values=values,
            created=now,
            last_seen=now,
            expires=now + config.idle_timeout,
            absolute_expires=now + config.absolute_timeout,
            user_id=login,
            info=None if login is None else self._client_info(now),
        )
        if session_id is not None:
            if not self.store.create(store_key(session_id), record):
                return False
        else:
            for _attempt in range(3):  # a collision of 256-bit IDs means a broken RNG
                session_id = new_session_id()
                if self.store.create(store_key(session_id), record):
                    break
            else:
                raise RuntimeError("could not create a session with a unique ID")
        session._session_id = session_id
        session.record = record
        session._regenerate = False
        session._login = None
        self._set_cookie(app, session, response)
        signals.session_created.send(app, session=session)
        return True

    def _client_info(self, now: float) -> str:
        """What is kept about the client at login: the time, and with SESSION_RECORD_CLIENT
        the IP address and user agent (personal data: off unless the app opts in)."""
        info: dict[str, Any] = {"auth": now}
        if self.config.record_client and has_request_context():
            info["ip"] = request.remote_addr
            info["ua"] = request.user_agent.string[:512]
        return json.dumps(info, separators=(",", ":"))

    def _check_size(self, serialized: dict[str, str]) -> None:
        """Raise :class:`SessionTooLarge` if ``serialized`` (name -> serialized value) is over
        ``SESSION_MAX_SIZE``, counted as stores count it (UTF-8 bytes of names and values)."""
        sizes = [(name, value_size(name, text)) for name, text in serialized.items()]
        size = sum(n for _, n in sizes)
        if size > self.config.max_size:
            largest = sorted(sizes, key=lambda item: item[1], reverse=True)[:3]
            raise SessionTooLarge(size, self.config.max_size, largest)
        if len(serialized) > self.config.max_keys:
            raise SessionTooManyKeys(len(serialized), self.config.max_keys)

    # -- cookies -----------------------------------------------------------------------------------

    def _set_cookie(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        """Send the session's ID. A permanent session's cookie lasts until the session's
        absolute end (the idle timeout is the server's business), so it never needs re-sending
        while the session lives."""
        config = self.config
        signer = self._get_signer(app)
        assert signer is not None and session._session_id is not None
        expires = None
        if session.permanent:
            assert session.record is not None
            end = min(session.record.absolute_expires, self.clock() + MAX_COOKIE_AGE)
            expires = datetime.fromtimestamp(end, timezone.utc)
        response.set_cookie(
            config.cookie_name,
            signer.sign(session._session_id),
            expires=expires,
            **self._cookie_attributes(app),
        )

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(self.config.cookie_name, **self._cookie_attributes(app))

    def _cookie_attributes(self, app: Flask) -> dict[str, Any]:
        """The cookie's attributes. A setting changed in ``app.config`` after
        ``ServerSession(app)`` is read per request through Flask's ``get_cookie_*`` helpers, as
        Flask's own session does; an unchanged one keeps the value parsed at start-up (with our
        defaults, e.g. ``SameSite=Lax``), and one given as an option is never overridden."""
        config = self.config
        seen = config.cookie_config

        def changed(*keys: str) -> bool:
            return any(key in seen and app.config.get(key) != seen[key] for key in keys)

        attributes: dict[str, Any] = {
            "path": config.cookie_path,
            "domain": config.cookie_domain,
            "secure": config.cookie_secure,
            "httponly": config.cookie_httponly,
            "samesite": config.cookie_samesite,
            "partitioned": config.cookie_partitioned,
        }
        if "SESSION_COOKIE_PATH" in seen and changed("SESSION_COOKIE_PATH", "APPLICATION_ROOT"):
            attributes["path"] = self.get_cookie_path(app) or "/"
        if changed("SESSION_COOKIE_DOMAIN"):
            attributes["domain"] = self.get_cookie_domain(app) or None
        if changed("SESSION_COOKIE_SECURE"):
            attributes["secure"] = bool(self.get_cookie_secure(app))
        if changed("SESSION_COOKIE_HTTPONLY"):
            attributes["httponly"] = bool(self.get_cookie_httponly(app))
        if changed("SESSION_COOKIE_SAMESITE"):
            attributes["samesite"] = self.get_cookie_samesite(app)
        if changed("SESSION_COOKIE_PARTITIONED"):
            attributes["partitioned"] = bool(self.get_cookie_partitioned(app))
        return attributes

    # -- failures and housekeeping ----------------------------------------------------------------

    def _respond_unavailable(
        self, app: Flask, exc: SessionStoreUnavailable, response: Response
    ) -> None:
        """Turn the response into the app's answer to the outage (HTTP 503 by default).

        Flask calls ``save_session`` after the view returned, where an exception would become a
        500; the change could not be saved, so the client must not see the view's success.
        """
        logger.warning("%s", exc)
        error_response = app.make_response(app.handle_user_exception(exc))
        response.status = error_response.status
        response.headers.clear()
        response.headers.extend(error_response.headers)
        response.set_data(error_response.get_data())

    def _schedule_cleanup(self, response: Response) -> None:
        interval = self.config.cleanup_interval
        if not interval or not self.store.capabilities.clear_expired:
            return
        now = self.clock()
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + interval
        response.call_on_close(self._cleanup)

    def _cleanup(self) -> None:
        """Remove expired sessions after the response went out; never fails the request."""
        batch = self.config.cleanup_batch_size
        try:
            removed = self.store.clear_expired(self.clock(), batch, limit=10 * batch)
        except Exception:
            logger.exception("removing expired sessions failed")
            return
        if removed:
            logger.debug("removed %d expired sessions", removed)
