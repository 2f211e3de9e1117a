"""The bridge to Flask's request cycle: open the session lazily, save only what changed.

This is the only module that sees requests and responses, with :mod:`.transport`, which carries
the signed ID in a cookie or a header. Per request it makes at most:
0 store calls if the view never touches ``session``; 1 to read (the load also refreshes the
idle expiry when due); 1 to save a change made without reading (a patch); 2 to read and change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from flask import Flask, Request, Response, has_request_context, request
from flask.sessions import SessionInterface

from . import signals
from .config import Config
from .errors import (
    SessionDataCorrupt,
    SessionIdCollision,
    SessionStoreUnavailable,
    SessionTooLarge,
    SessionTooManyKeys,
)
from .ids import CookieSigner, new_session_id, store_key
from .saving import Changes, SaveStep, decide_save, needs_cookie
from .serialization import dumps_value
from .session import ServerSideSession
from .stores import Patch, Record, Touch
from .stores.base import value_size
from .transport import CookieTransport, HeaderTransport, Transport

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
#: The ``info`` of a record a plug-in keeps beside the sessions (a migration's forwarding
#: record): not a session, so the management API leaves it out.
AUXILIARY_INFO = '{"forwarding":true}'


def is_auxiliary(record: Record) -> bool:
    """Whether ``record`` is a plug-in's record (see :data:`AUXILIARY_INFO`), not a session."""
    return record.info == AUXILIARY_INFO


class SessionPlugin(Protocol):
    """A feature only some apps need, attached to the interface at start-up
    (:meth:`ServerSessionInterface.add_plugin`); the core imports none of them.

    The one hook: :meth:`open_foreign`, called for a cookie we did not issue. The session it
    returns may load itself from elsewhere (:meth:`ServerSideSession.moving_in`) or be made from
    the cookie (:meth:`ServerSideSession.made_from`); either is then saved as any other.
    """

    def open_foreign(
        self, app: Flask, request: Request, cookie: str, keys: tuple[Any, ...]
    ) -> ServerSideSession | None:
        """A session for ``cookie``, which our signer refused (``keys``: the app's secret key
        and fallbacks, current first); ``None`` to refuse it as the core does."""
        ...


class ServerSessionInterface(SessionInterface):
    """Flask's session interface, backed by a :class:`~flask_serversession.stores.Store`.

    :meth:`open_session` gives each request a lazy :class:`ServerSideSession`; the view's first
    read loads it. :meth:`save_session` takes the session's :class:`~.saving.Changes`, asks
    :func:`~.saving.decide_save` what the store must do, and does it.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = config.store
        self._signer_keys: tuple[Any, ...] = ()
        self._signer: CookieSigner | None = None
        self._next_cleanup = 0.0
        #: Plug-ins asked about cookies we did not issue, in the order added.
        self.plugins: list[SessionPlugin] = []
        #: Where times come from; tests replace it to move time forward.
        self.clock: Callable[[], float] = time.time
        #: The session cookie; the transport unless SESSION_TRANSPORT says otherwise.
        self.cookies = CookieTransport(self)
        #: How the ID travels by default (SESSION_TRANSPORT).
        self.transport: Transport = self.cookies
        #: With SESSION_TRANSPORT "both": the header, which serves a request that carries it.
        self._header_first: HeaderTransport | None = None
        if config.transport != "cookie":
            header = HeaderTransport(
                config.header_name, config.header_scheme, config.response_header
            )
            if config.transport == "header":
                self.transport = header
            else:
                self._header_first = header
        self._steps: dict[SaveStep, Callable[[Flask, ServerSideSession, Changes, Response], bool]]
        self._steps = {
            "destroy": self._save_destroy,
            "drop": self._save_drop,
            "patch-unloaded": self._save_unloaded,
            "skip": lambda *_: False,
            "create": self._save_create,
            "create-or-join": self._save_create_or_join,
            "delete": self._save_delete,
            "regenerate": self._save_regenerate,
            "patch": self._save_patch,
        }

    def add_plugin(self, plugin: SessionPlugin) -> None:
        """Ask ``plugin`` about the cookies we did not issue (see :class:`SessionPlugin`)."""
        self.plugins.append(plugin)

    # -- opening -----------------------------------------------------------------------------------

    def open_session(self, app: Flask, request: Request) -> ServerSideSession | None:
        signer = self._get_signer(app)
        if signer is None:
            return None  # no SECRET_KEY: Flask's null session explains the problem on write
        transport = self.transport
        header = self._header_first
        if header is not None and header.presented(request):
            transport = header
        session_id = None
        token, reason = transport.read(request)
        if token:
            session_id, reason = signer.unsign(token)
            if reason is not None and transport is self.cookies:
                for plugin in self.plugins:
                    foreign = plugin.open_foreign(app, request, token, self._signer_keys)
                    if foreign is not None:
                        foreign.transport = transport
                        return foreign
        if reason is not None:
            # Never reaches the store: the visitor gets a new, empty session.
            signals.reject(app, signals.rejection_reason(reason))
        session = ServerSideSession(self.loader(app, session_id), session_id, self.clock())
        session.transport = transport
        return session

    def _get_signer(self, app: Flask) -> CookieSigner | None:
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if keys != self._signer_keys or self._signer is None:
            self._signer = CookieSigner(keys)
            self._signer_keys = keys
        return self._signer

    def loader(self, app: Flask, session_id: str | None) -> Callable[[ServerSideSession], None]:
        """What loads the session stored under ``session_id`` when the view first reads it."""

        def load(session: ServerSideSession) -> None:
            assert session_id is not None
            self._load(app, session, session_id)

        return load

    def _load(self, app: Flask, session: ServerSideSession, session_id: str) -> None:
        config = self.config
        now = self.clock()
        key = store_key(session_id)
        anonymous = config.anonymous_idle_timeout
        touch = Touch(
            now,
            now + config.idle_timeout,
            now - config.touch_interval,
            None if anonymous is None else now + anonymous,
        )
        try:
            record = self.store.load(key, touch)
        except SessionDataCorrupt as exc:
            self._drop_corrupt(app, key, exc)
            session.set_loaded(None, {}, {})
            return
        if record is None or not self._live(record, now):
            session.set_loaded(None, {}, {}, ended=self.ended_meanwhile(session, record))
            return
        # Each value is decoded when the view first reads it; one that does not decode then
        # drops the record as an unreadable one does here.
        session.set_loaded(
            record, record.values, on_corrupt=lambda exc: self._drop_corrupt(app, key, exc)
        )

    def _drop_corrupt(self, app: Flask, key: str, exc: SessionDataCorrupt) -> None:
        """A stored session that is not something we wrote (a planted payload, a half-migrated
        row): never trusted, never executed, reported, and deleted; a new session follows."""
        logger.error("dropping an unreadable stored session: %s", exc)
        signals.reject(app, "corrupt")
        self.store.delete(key)

    def _live(self, record: Record, now: float) -> bool:
        """Whether ``record`` (as read, before the touch) is a live session: one bound to no
        user that has idled past SESSION_ANONYMOUS_IDLE_TIMEOUT is not, whatever expiry it was
        stored with (by an assign-only write, which cannot know the binding, or under a longer
        timeout configured then)."""
        anonymous = self.config.anonymous_idle_timeout
        if anonymous is None or record.user_id is not None:
            return record.is_live(now)
        return record.is_live(now) and now < record.last_seen + anonymous

    @staticmethod
    def ended_meanwhile(session: ServerSideSession, record: Record | None) -> bool:
        """Whether ``record`` is the tombstone of a session ended while this request was in
        flight (write nothing), rather than before it began (start afresh)."""
        if record is None or not record.ended:
            return False
        ended_at = record.expires - TOMBSTONE_SECONDS
        return session.opened_at < ended_at + TOMBSTONE_GRACE

    # -- saving ------------------------------------------------------------------------------------

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if not isinstance(session, ServerSideSession) or not session.accessed:
            return  # untouched: no store call, no cookie
        transport = self._transport(session)
        transport.vary(response)
        if self._header_first is not None:
            # With "both", whether the header is there decides which one is read.
            response.vary.add(self._header_first.name)
        if not session.start_saving():
            return  # the load failed and the view got the error, or saved already
        try:
            self._save(app, session, response)
            transport.finish(request, response, session.handle is not None)
        except SessionStoreUnavailable as exc:
            self._respond_unavailable(app, exc, response)
        except SessionDataCorrupt as exc:
            # Found while saving (a patch re-read the record): the change is dropped, the
            # record reported, as when loading.
            logger.error("an unreadable stored session stopped a save: %s", exc)
            signals.reject(app, "corrupt")
        self._schedule_cleanup(response)

    def _save(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        """Write what changed, one decided step at a time (see :func:`~.saving.decide_save`).
        A cookie is sent only with a new ID (a new, regenerated or moved-in session) or a
        changed ``permanent``: a request in flight never re-sends an old ID."""
        changes = session.hand_over()
        if not changes.loaded and changes.session_id is None:
            session.load()  # moved in by a plug-in: moved before anything is written
            changes = session.hand_over()
        # A step that changed the session (destroy, a refused patch, a join) asks for the next.
        while self._steps[decide_save(changes)](app, session, changes, response):
            changes = session.hand_over()
        if changes.cookie_pending:  # moved in by a plug-in: the client needs the new ID
            changes = session.hand_over()
            if needs_cookie(changes) and not self._transport(session).sent(response):
                self._send_token(app, session, changes, response)

    def _save_destroy(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        assert changes.destroy_id is not None
        self.store.delete(store_key(changes.destroy_id), self.clock() + TOMBSTONE_SECONDS)
        signals.session_destroyed.send(app, session=session)
        session.destroyed()
        if changes.empty:
            self._transport(session).end(app, response)
            return False
        return True  # values set after destroy() go into a new session

    def _save_drop(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        logger.info("a change to a session that was ended meanwhile was dropped")
        return False

    def _save_unloaded(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        """Assigned without reading: one patch, no load. The store checks the size of the
        whole session as the patch leaves it (the assigned values alone are checked here first,
        without a round trip)."""
        assert changes.session_id is not None
        config = self.config
        now = self.clock()
        diff = changes.diff(dumps_value)
        self._check_size(diff.serialized)
        patch = Patch(
            diff.changed,
            (),
            now,
            now + config.idle_timeout,
            max_size=config.max_size,
            max_keys=config.max_keys,
        )
        applied, record = self._patch(store_key(changes.session_id), patch)
        if applied:
            return False
        # Not live. Ended meanwhile (a tombstone): write nothing, send no cookie, so a logout or
        # a regeneration is never undone. Otherwise it expired or never was: the values go into
        # a new session.
        session.set_loaded(None, {}, {}, ended=self.ended_meanwhile(session, record))
        return True

    def _save_create(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        self._create(app, session, response)
        return False

    def _save_create_or_join(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        """For a session a plug-in made (see :class:`~.saving.Origin`): the first of the
        requests sent at once from its origin creates it under the origin's claimed ID; one
        that finds it created joins it, saving only what it changed itself."""
        assert changes.origin is not None
        new_id = changes.origin.claim_id(self.clock())
        if self._create(app, session, response, session_id=new_id):
            return False
        record = self.live_record(new_id)
        if record is None:
            self._create(app, session, response)  # ended meanwhile: a session of its own
            return False
        # (The attempt to create made it permanent if SESSION_PERMANENT asks, as it did the
        # session joined: this request's cookie lasts as long as the others'.)
        session.join(new_id, record)
        return True

    def live_record(self, session_id: str) -> Record | None:
        """The live record stored under ``session_id``, else ``None``."""
        record = self.store.load(store_key(session_id))
        return record if record is not None and record.is_live(self.clock()) else None

    def _save_delete(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        assert changes.session_id is not None
        self.store.delete(store_key(changes.session_id), self.clock() + TOMBSTONE_SECONDS)
        signals.session_destroyed.send(app, session=session)
        self._transport(session).end(app, response)
        return False

    def _limited_patch(self, changes: Changes, **rotation: Any) -> Patch:
        """The patch of what changed. One that sets values is checked here and again by the
        store, against the session as stored when the patch applies: requests that overlap,
        each within the limit, cannot together take it over. One that only deletes is never
        refused."""
        config = self.config
        now = self.clock()
        diff = changes.diff(dumps_value)
        limits: dict[str, Any] = {}
        if diff.changed:
            self._check_size(diff.serialized)
            limits = {"max_size": config.max_size, "max_keys": config.max_keys}
        user = rotation.get("user_id") or (changes.record.user_id if changes.record else None)
        return Patch(
            diff.changed, diff.deleted, now, now + config.idle_for(user), **rotation, **limits
        )

    def _save_regenerate(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        assert changes.session_id is not None and changes.record is not None
        new_id = new_session_id()
        login = changes.bind_user
        now = self.clock()
        patch = self._limited_patch(
            changes,
            new_key=store_key(new_id),
            tombstone_until=now + TOMBSTONE_SECONDS,
            user_id=login,
            info=None if login is None else self._client_info(now),
        )
        if self._patch(store_key(changes.session_id), patch)[0]:
            record = changes.record
            if login is not None:
                record.user_id = login
                record.info = patch.info
            session.stored_as(new_id, record)
            self._send_token(app, session, session.hand_over(), response)
            signals.session_regenerated.send(app, session=session)
        return False

    def _save_patch(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> bool:
        assert changes.session_id is not None
        patch = self._limited_patch(changes)
        if not patch.set and not patch.delete:
            return False  # nothing changed: no write
        if self._patch(store_key(changes.session_id), patch)[0] and "_permanent" in patch.set:
            transport = self._transport(session)
            if transport.has_lifetime:
                self._send_token(app, session, changes, response)  # its lifetime changed
        return False

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

    def _create(
        self,
        app: Flask,
        session: ServerSideSession,
        response: Response,
        session_id: str | None = None,
    ) -> bool:
        """Store ``session`` as a new session and send its cookie. With ``session_id``, under
        that ID or not at all (``False``: a session exists under it)."""
        config = self.config
        if config.permanent:
            session.setdefault("_permanent", True)  # SESSION_PERMANENT: new sessions are permanent
        changes = session.hand_over()
        values = changes.diff(dumps_value).serialized
        self._check_size(values)
        login = changes.bind_user
        now = self.clock()
        record = Record(
            values=values,
            created=now,
            last_seen=now,
            expires=now + config.idle_for(login),
            absolute_expires=now + config.absolute_timeout,
            user_id=login,
            info=None if login is None else self._client_info(now),
        )
        if session_id is not None:
            if not self.store.create(store_key(session_id), record):
                return False
        else:
            session_id = self._create_unique(record)
        session.stored_as(session_id, record)
        self._send_token(app, session, session.hand_over(), response)
        signals.session_created.send(app, session=session)
        return True

    def _create_unique(self, record: Record) -> str:
        """Store ``record`` under a new ID and return it."""
        for _attempt in range(3):  # a collision of 256-bit IDs means a broken RNG
            session_id = new_session_id()
            if self.store.create(store_key(session_id), record):
                return session_id
        raise SessionIdCollision("could not create a session with a unique ID")

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
        config = self.config
        chars = sum(map(len, serialized)) + sum(map(len, serialized.values()))
        if chars * 4 <= config.max_size and len(serialized) <= config.max_keys:
            # At most 4 bytes a character: within the limit without counting value by value,
            # which cost a read-then-write of a 100 KB session (294 values) about 40 µs of
            # its 340 µs on the memory store (best of 9 x 2,000; 4 µs at 10 KB).
            return
        sizes = [(name, value_size(name, text)) for name, text in serialized.items()]
        size = sum(n for _, n in sizes)
        if size > config.max_size:
            largest = sorted(sizes, key=lambda item: item[1], reverse=True)[:3]
            raise SessionTooLarge(size, config.max_size, largest)
        if len(serialized) > config.max_keys:
            raise SessionTooManyKeys(len(serialized), config.max_keys)

    # -- the token on the client ----------------------------------------------------------------

    def _transport(self, session: ServerSideSession) -> Transport:
        """How ``session``'s ID travels in this request (set when it was opened)."""
        return session.transport or self.transport

    def _send_token(
        self, app: Flask, session: ServerSideSession, changes: Changes, response: Response
    ) -> None:
        """Send the session's ID, signed. A permanent session's cookie lasts until the
        session's absolute end (the idle timeout is the server's business), so it never needs
        re-sending while the session lives."""
        signer = self._get_signer(app)
        assert signer is not None and changes.session_id is not None
        expires = None
        if session.permanent:
            assert changes.record is not None
            end = min(changes.record.absolute_expires, self.clock() + MAX_COOKIE_AGE)
            expires = datetime.fromtimestamp(end, timezone.utc)
        self._transport(session).send(app, response, signer.sign(changes.session_id), expires)

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
