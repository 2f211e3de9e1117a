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

**How it attaches.** This package is a plug-in: the core never imports it unless one of
Flask-Session's keys or ours that ask for it (:data:`~flask_serversession.config.MIGRATE_KEYS`:
``SESSION_TYPE``, ``SESSION_MIGRATE_*``, ...) is set. Then ``read_config`` hands those keys to
:func:`flask_session_setup`, and ``init_app`` adds the :class:`Migration` it builds to the session
interface (:meth:`~flask_serversession.interface.ServerSessionInterface.add_plugin`). Its one
hook, ``open_foreign``, is asked about each cookie our signer refused; the sessions it returns
load themselves from the old store (``ServerSideSession.moving_in``) or are made from a Flask
cookie (``ServerSideSession.made_from``, with an :class:`~flask_serversession.saving.Origin` that
claims the forwarding record), and are then saved as any other.

The modules, one concern each: :mod:`.compat` (configuration), :mod:`.legacy` (the old stores and
their records), :mod:`.forwarding` (forwarding records and their seal), :mod:`.cookies` (Flask
cookie sessions), :mod:`.bulk` (``flask sessions import``), :mod:`.plugin` (the hook).
"""

from __future__ import annotations

from .bulk import import_sessions, summary
from .compat import UNSUPPORTED_TYPES, FlaskSessionSetup, flask_session_setup
from .cookies import cookie_origin, flask_cookie_session, lifetime_seconds
from .forwarding import (
    IMPORTED_PREFIX,
    MOVE_GRACE,
    MOVED_PREFIX,
    forward_record,
    forwarded_id,
    imported_id,
    is_forwarding,
    moved_id,
    open_forward,
    seal_forward,
)
from .legacy import (
    LegacyStore,
    MemcachedLegacy,
    MigrationStats,
    RedisLegacy,
    SQLAlchemyLegacy,
    Unmigratable,
    decode_record,
    flask_session_sid,
    read_legacy,
    serialize_values,
    sid_shape,
    to_record,
)
from .plugin import Migration

__all__ = [
    "IMPORTED_PREFIX",
    "MOVED_PREFIX",
    "MOVE_GRACE",
    "UNSUPPORTED_TYPES",
    "FlaskSessionSetup",
    "LegacyStore",
    "MemcachedLegacy",
    "Migration",
    "MigrationStats",
    "RedisLegacy",
    "SQLAlchemyLegacy",
    "Unmigratable",
    "cookie_origin",
    "decode_record",
    "flask_cookie_session",
    "flask_session_setup",
    "flask_session_sid",
    "forward_record",
    "forwarded_id",
    "import_sessions",
    "imported_id",
    "is_forwarding",
    "lifetime_seconds",
    "moved_id",
    "open_forward",
    "read_legacy",
    "seal_forward",
    "serialize_values",
    "sid_shape",
    "summary",
    "to_record",
]
