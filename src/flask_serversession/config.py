"""Every configuration key, its default and its meaning, read once into a frozen :class:`Config`.

Keys are read from ``app.config`` when :meth:`ServerSession.init_app` runs; keyword options
given to :class:`ServerSession` (``idle_timeout=600`` for ``SESSION_IDLE_TIMEOUT``) win over
``app.config``. ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` are the exception: they are read on
each request, like Flask does, so they may be set after ``init_app``.

:data:`KEYS` is the reference table; docs/configuration.md is checked against it by a test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask

from .errors import ConfigurationError
from .stores import Store
from .transport import TransportName, transport_settings

if TYPE_CHECKING:
    from .interface import ServerSessionInterface, SessionPlugin

    #: Builds a plug-in for an app's session interface (``None``: nothing to attach).
    PluginFactory = Callable[[ServerSessionInterface], SessionPlugin | None]

logger = logging.getLogger("flask_serversession")

_DAY = 24 * 3600
#: Flask's own default ``PERMANENT_SESSION_LIFETIME``: left as it is, it says nothing about
#: how long an idle session should live.
FLASK_LIFETIME = timedelta(days=31)
#: The idle timeout when neither SESSION_IDLE_TIMEOUT nor PERMANENT_SESSION_LIFETIME is set:
#: the top of OWASP's range for low-risk applications, and ASVS 3.3.2's bound at level 2.
DEFAULT_IDLE_TIMEOUT = 30 * 60


@dataclass(frozen=True)
class Key:
    """One configuration key, for the reference table."""

    name: str
    default: str
    meaning: str


#: Every key Flask-ServerSession reads: name, default, meaning.
KEYS: tuple[Key, ...] = (
    Key(
        "SESSION_STORE",
        "SQLite file in ``app.instance_path``",
        "Where sessions live: a URL (``sqlite:///path.db``, ``memory://``) or a Store object.",
    ),
    Key(
        "SESSION_KEY_PREFIX",
        "the store's own (``session:`` for Redis)",
        "Prefix of every key in stores that share a keyspace (Redis, Memcached).",
    ),
    Key(
        "SESSION_SQL_CREATE_TABLE",
        "``True``",
        "SQL store: create the sessions table on first use (``False`` when Alembic owns it).",
    ),
    Key(
        "SESSION_IDLE_TIMEOUT",
        "30 minutes (``PERMANENT_SESSION_LIFETIME`` if the app changed it)",
        "A session unused for this long (seconds or timedelta) expires on the server.",
    ),
    Key(
        "SESSION_ANONYMOUS_IDLE_TIMEOUT",
        "the idle timeout",
        "Idle timeout of a session bound to no user (see ``session.login``): a visitor's CSRF"
        " token or cart. At most SESSION_IDLE_TIMEOUT; set it shorter when logged-in sessions"
        " may idle long.",
    ),
    Key(
        "SESSION_ABSOLUTE_TIMEOUT",
        "30 days",
        "A session ends this long after it was created, however active. ``None`` disables.",
    ),
    Key(
        "SESSION_TOUCH_INTERVAL",
        "60 seconds (at most half the shorter idle timeout)",
        "How often a read-only request may refresh the idle expiry in the store.",
    ),
    Key(
        "SESSION_MAX_SIZE",
        "1 MiB",
        "Largest session, in UTF-8 bytes of its key names and serialized values, enforced on"
        " every save, assign-only ones too; a larger one raises SessionTooLarge.",
    ),
    Key(
        "SESSION_MAX_KEYS",
        "1000",
        "Most keys one session may hold, enforced on every save as SESSION_MAX_SIZE is; more"
        " raise SessionTooManyKeys. A session's cost grows with its keys (a load reads them"
        " all), so a view that makes a key per item seen cannot grow it without bound.",
    ),
    Key(
        "SESSION_CLEANUP_INTERVAL",
        "300 seconds",
        "How often a process removes expired sessions, after a response is sent. 0 disables.",
    ),
    Key(
        "SESSION_CLEANUP_BATCH_SIZE",
        "1000",
        "Expired sessions removed per store statement, so cleanup never holds a lock for long.",
    ),
    Key(
        "SESSION_RECORD_CLIENT",
        "``False``",
        "At login, also keep the client's IP address and user agent (for a devices page).",
    ),
    Key(
        "SESSION_TYPE",
        "none",
        "Flask-Session's: ``redis``, ``memcached`` or ``sqlalchemy`` puts sessions in that store"
        " (from SESSION_REDIS, SESSION_MEMCACHED, SESSION_SQLALCHEMY) and migrates Flask-Session's"
        " sessions on first use; other types fail at start-up.",
    ),
    Key(
        "SESSION_REDIS",
        "none",
        "Flask-Session's: the ``redis.Redis`` client of SESSION_TYPE redis.",
    ),
    Key(
        "SESSION_MEMCACHED",
        "none",
        "Flask-Session's: the pymemcache client of SESSION_TYPE memcached.",
    ),
    Key(
        "SESSION_SQLALCHEMY",
        "none",
        "Flask-Session's: the Flask-SQLAlchemy ``db`` of SESSION_TYPE sqlalchemy (our own table"
        " goes in its database).",
    ),
    Key(
        "SESSION_SQLALCHEMY_TABLE",
        "``sessions``",
        "Flask-Session's table, read when migrating (ours is ``serversession``).",
    ),
    Key(
        "SESSION_SQLALCHEMY_SCHEMA",
        "none",
        "Flask-Session's: the schema of its table, and of ours.",
    ),
    Key(
        "SESSION_SQLALCHEMY_BIND_KEY",
        "none",
        "Flask-Session's: the Flask-SQLAlchemy bind of its table, and of ours.",
    ),
    Key(
        "SESSION_PERMANENT",
        "``True`` with SESSION_TYPE, else ``False``",
        "New sessions are permanent (their cookie outlives the browser session).",
    ),
    Key(
        "SESSION_USE_SIGNER",
        "``False``",
        "Flask-Session's: its cookies were signed, so migration checks its signature. Ours are"
        " always signed.",
    ),
    Key(
        "SESSION_ID_LENGTH",
        "32",
        "Flask-Session's: the bytes of its session IDs, so that only a cookie of that shape is"
        " looked up in its store while migrating; our own session IDs are always 256 bits.",
    ),
    Key(
        "SESSION_CLEANUP_N_REQUESTS",
        "ignored",
        "Flask-Session's: accepted; expired sessions are removed every SESSION_CLEANUP_INTERVAL.",
    ),
    Key(
        "SESSION_MIGRATE_FROM_FLASK_SESSION",
        "``True`` with SESSION_TYPE",
        "Move a Flask-Session session into ours on its first use (see Migrating).",
    ),
    Key(
        "SESSION_MIGRATE_COOKIE_SESSIONS",
        "``False``",
        "Turn a valid Flask signed-cookie session into a server-side one on its first use.",
    ),
    Key(
        "SESSION_TRANSPORT",
        "``cookie``",
        "How the signed session ID travels: ``cookie``; ``header`` (API clients: read from"
        " SESSION_HEADER_NAME, sent in SESSION_RESPONSE_HEADER, no cookie ever); or ``both``"
        " (a request carrying the header is served by it, any other by the cookie).",
    ),
    Key(
        "SESSION_HEADER_NAME",
        "``Authorization``",
        "The request header that carries the token with the header transport.",
    ),
    Key(
        "SESSION_HEADER_SCHEME",
        "``Bearer``",
        "The scheme before the token in SESSION_HEADER_NAME, matched case-insensitively and"
        ' followed by one space; ``""`` for a bare token (``X-Session-Token: <token>``).',
    ),
    Key(
        "SESSION_RESPONSE_HEADER",
        "``X-Session-Token``",
        "The response header that gives the client a new token (a new session, login,"
        " regenerate), or an empty value when its session ended; absent otherwise.",
    ),
    Key("SESSION_COOKIE_NAME", "``session``", "Flask's: the cookie's name."),
    Key("SESSION_COOKIE_DOMAIN", "none", "Flask's: the cookie's Domain attribute."),
    Key(
        "SESSION_COOKIE_PATH",
        "``APPLICATION_ROOT``",
        "Flask's: the cookie's Path attribute.",
    ),
    Key(
        "SESSION_COOKIE_SECURE",
        "``False``",
        "Flask's: send the cookie over HTTPS only. Forced on by a ``__Host-``/``__Secure-`` name.",
    ),
    Key("SESSION_COOKIE_HTTPONLY", "``True``", "Flask's: hide the cookie from JavaScript."),
    Key(
        "SESSION_COOKIE_SAMESITE",
        "``Lax`` (Flask's own default is none)",
        "``Lax``, ``Strict`` or ``None``; ``None`` requires SESSION_COOKIE_SECURE.",
    ),
    Key("SESSION_COOKIE_PARTITIONED", "``False``", "Flask's: the CHIPS Partitioned attribute."),
    Key(
        "SECRET_KEY",
        "required",
        "Flask's: signs the session ID in the cookie. Read on each request.",
    ),
    Key(
        "SECRET_KEY_FALLBACKS",
        "none",
        "Flask's: older keys still accepted, so rotating the key logs no one out.",
    ),
)

#: The cookie settings Flask reads per request (``get_cookie_path`` reads both of the last two).
COOKIE_CONFIG_KEYS = (
    "SESSION_COOKIE_DOMAIN",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_PARTITIONED",
    "SESSION_COOKIE_PATH",
    "APPLICATION_ROOT",
)

#: Flask-Session's keys and ours that ask for the migration plug-in
#: (:mod:`flask_serversession.migrate`); without any of them it is never imported.
MIGRATE_KEYS = (
    "SESSION_TYPE",
    "SESSION_USE_SIGNER",
    "SESSION_ID_LENGTH",
    "SESSION_MIGRATE_FROM_FLASK_SESSION",
    "SESSION_MIGRATE_COOKIE_SESSIONS",
)

_OPTION_NAMES = {
    key.name.removeprefix("SESSION_").lower(): key.name
    for key in KEYS
    if key.name.startswith("SESSION_")
}


class FlaskSessionCompat(Protocol):
    """What Flask-Session's keys said, as the migration plug-in read them."""

    #: Our store in the place Flask-Session's keys name (``None``: not implied).
    store: Store | None
    #: Flask-Session's own store, to migrate from (``None``: nothing to migrate).
    legacy: Any
    #: New sessions are permanent.
    permanent: bool
    #: What moved since start-up (``MigrationStats``; ``None`` without migration).
    stats: Any

    def plugin(self, interface: ServerSessionInterface) -> SessionPlugin | None:
        """The plug-in to attach to ``interface``, if migration is on."""
        ...


@dataclass
class _NoFlaskSession:
    """No Flask-Session key is set: nothing to migrate from."""

    store: Store | None = None
    legacy: Any = None
    permanent: bool = False
    stats: Any = None

    def plugin(self, interface: ServerSessionInterface) -> SessionPlugin | None:
        return None


@dataclass(frozen=True)
class Config:
    """The parsed configuration of one app. Times are seconds."""

    store: Store
    idle_timeout: float
    absolute_timeout: float
    touch_interval: float
    max_size: int
    max_keys: int
    cleanup_interval: float
    cleanup_batch_size: int
    record_client: bool
    cookie_name: str
    cookie_domain: str | None
    cookie_path: str
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: str | None
    cookie_partitioned: bool
    #: ``app.config``'s cookie settings as they were at start-up (``SESSION_COOKIE_*`` and
    #: ``APPLICATION_ROOT``), without those given as options to ``ServerSession(...)``: one
    #: changed later is read per request, as Flask does (see ``_cookie_attributes``).
    cookie_config: Mapping[str, Any] = field(default_factory=dict)
    #: New sessions are permanent (SESSION_PERMANENT).
    permanent: bool = False
    #: Flask-Session compatibility and migration (see :mod:`flask_serversession.migrate`).
    flask_session: FlaskSessionCompat = field(default_factory=_NoFlaskSession)
    #: The idle timeout of a session bound to no user (SESSION_ANONYMOUS_IDLE_TIMEOUT);
    #: ``None``: :attr:`idle_timeout`, as for every session.
    anonymous_idle_timeout: float | None = None
    #: SESSION_TRANSPORT: ``cookie``, ``header`` or ``both`` (see :mod:`.transport`).
    transport: TransportName = "cookie"
    #: SESSION_HEADER_NAME, SESSION_HEADER_SCHEME, SESSION_RESPONSE_HEADER.
    header_name: str = "Authorization"
    header_scheme: str = "Bearer"
    response_header: str = "X-Session-Token"

    def idle_for(self, user_id: str | None) -> float:
        """The idle timeout of a session bound to ``user_id`` (``None``: to no user)."""
        anonymous = self.anonymous_idle_timeout
        return self.idle_timeout if user_id is not None or anonymous is None else anonymous

    @property
    def plugins(self) -> tuple[PluginFactory, ...]:
        """What builds the plug-ins ``init_app`` attaches to the session interface."""
        return (self.flask_session.plugin,)


def read_config(app: Flask, options: Mapping[str, Any], store: Store | str | None) -> Config:
    """Parse ``app.config`` and ``options`` into a :class:`Config`; raise on bad values."""
    values = _merged(app, options)
    idle, absolute, touch_interval, anonymous = _timeouts(values)
    cookie = _cookie(values)
    compat = _flask_session(app, values)
    if store is None and values.get("SESSION_STORE") is None and compat.store is not None:
        store = compat.store
    if values.get("SESSION_CLEANUP_N_REQUESTS") is not None:
        _int(values, "SESSION_CLEANUP_N_REQUESTS", 1)
        logger.info(
            "SESSION_CLEANUP_N_REQUESTS is ignored: expired sessions are removed every"
            " SESSION_CLEANUP_INTERVAL seconds, after a response"
        )
    return Config(
        store=_store(app, values, store),
        idle_timeout=idle,
        absolute_timeout=absolute,
        touch_interval=touch_interval,
        max_size=_int(values, "SESSION_MAX_SIZE", 1024 * 1024),
        max_keys=_int(values, "SESSION_MAX_KEYS", 1000),
        cleanup_interval=_seconds(values, "SESSION_CLEANUP_INTERVAL", 300, allow_zero=True),
        cleanup_batch_size=_int(values, "SESSION_CLEANUP_BATCH_SIZE", 1000),
        record_client=bool(values.get("SESSION_RECORD_CLIENT", False)),
        **cookie,
        cookie_config={
            key: app.config.get(key)
            for key in COOKIE_CONFIG_KEYS
            if key.removeprefix("SESSION_").lower() not in options
        },
        permanent=compat.permanent,
        flask_session=compat,
        anonymous_idle_timeout=anonymous,
        **transport_settings(values),
    )


def _merged(app: Flask, options: Mapping[str, Any]) -> dict[str, Any]:
    """``app.config`` with ``options`` (checked) under their config keys."""
    unknown = set(options) - set(_OPTION_NAMES)
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))};"
            f" known: {', '.join(sorted(_OPTION_NAMES))}"
        )
    values: dict[str, Any] = dict(app.config)
    values.update({_OPTION_NAMES[name]: value for name, value in options.items()})
    return values


def _timeouts(values: Mapping[str, Any]) -> tuple[float, float, float, float | None]:
    """The idle timeout, the absolute timeout, the touch interval and the anonymous idle
    timeout (``None``: the idle timeout), in seconds."""
    lifetime = values.get("PERMANENT_SESSION_LIFETIME")
    if lifetime is None or lifetime in (FLASK_LIFETIME, FLASK_LIFETIME.total_seconds()):
        lifetime = DEFAULT_IDLE_TIMEOUT  # Flask's default is a cookie's life, not an idle one
    idle = _seconds(values, "SESSION_IDLE_TIMEOUT", lifetime)
    absolute_raw = values.get("SESSION_ABSOLUTE_TIMEOUT", 30 * _DAY)
    absolute = (
        100 * 365 * _DAY
        if absolute_raw is None
        else _seconds(values, "SESSION_ABSOLUTE_TIMEOUT", 30 * _DAY)
    )
    anonymous = _anonymous_idle(values, idle)
    shortest = idle if anonymous is None else anonymous
    touch = values.get("SESSION_TOUCH_INTERVAL")
    touch_interval = (
        min(60.0, shortest / 2) if touch is None else _seconds(values, "SESSION_TOUCH_INTERVAL", 60)
    )
    if touch_interval >= shortest:
        raise ConfigurationError(
            "SESSION_TOUCH_INTERVAL must be shorter than the idle timeout"
            f"{'' if anonymous is None else ' (and SESSION_ANONYMOUS_IDLE_TIMEOUT)'},"
            " or active sessions would expire"
        )
    return idle, absolute, touch_interval, anonymous


def _anonymous_idle(values: Mapping[str, Any], idle: float) -> float | None:
    """SESSION_ANONYMOUS_IDLE_TIMEOUT in seconds; ``None`` when unset or equal to ``idle``."""
    if values.get("SESSION_ANONYMOUS_IDLE_TIMEOUT") is None:
        return None
    anonymous = _seconds(values, "SESSION_ANONYMOUS_IDLE_TIMEOUT", idle)
    if anonymous > idle:
        raise ConfigurationError(
            f"SESSION_ANONYMOUS_IDLE_TIMEOUT ({anonymous:g} s) is longer than the idle timeout"
            f" ({idle:g} s): a visitor's session would outlive a logged-in user's; make it"
            " shorter, or leave it unset"
        )
    return None if anonymous == idle else anonymous


def _cookie(values: Mapping[str, Any]) -> dict[str, Any]:
    """The cookie's name and attributes, as :class:`Config` fields."""
    name = _str(values, "SESSION_COOKIE_NAME", "session")
    domain = values.get("SESSION_COOKIE_DOMAIN") or None
    path = values.get("SESSION_COOKIE_PATH") or values.get("APPLICATION_ROOT") or "/"
    secure = bool(values.get("SESSION_COOKIE_SECURE", False))
    if name.startswith("__Host-"):
        _check_host_prefix(name, domain, values.get("SESSION_COOKIE_PATH"))
        path, secure = "/", True
    elif name.startswith("__Secure-"):
        secure = True
    samesite = _samesite(values.get("SESSION_COOKIE_SAMESITE"))
    if samesite == "None" and not secure:
        raise ConfigurationError(
            "SESSION_COOKIE_SAMESITE 'None' needs SESSION_COOKIE_SECURE = True: browsers refuse"
            " a SameSite=None cookie that is not Secure"
        )
    return {
        "cookie_name": name,
        "cookie_domain": domain,
        "cookie_path": path,
        "cookie_secure": secure,
        "cookie_httponly": bool(values.get("SESSION_COOKIE_HTTPONLY", True)),
        "cookie_samesite": samesite,
        "cookie_partitioned": bool(values.get("SESSION_COOKIE_PARTITIONED", False)),
    }


def _check_host_prefix(name: str, domain: str | None, path: Any) -> None:
    """The ``__Host-`` prefix makes browsers drop the cookie unless Secure, Path=/ and no
    Domain."""
    if domain is not None:
        raise ConfigurationError(
            f"SESSION_COOKIE_NAME {name!r} needs no SESSION_COOKIE_DOMAIN, but it is"
            f" {domain!r}: browsers refuse a __Host- cookie with a Domain"
        )
    if path not in (None, "/"):
        raise ConfigurationError(
            f"SESSION_COOKIE_NAME {name!r} needs SESSION_COOKIE_PATH '/', but it is {path!r}"
        )


def _flask_session(app: Flask, values: Mapping[str, Any]) -> FlaskSessionCompat:
    """Flask-Session's keys, read by the migration plug-in, which is imported only when one of
    :data:`MIGRATE_KEYS` is set."""
    prefix = values.get("SESSION_KEY_PREFIX")
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigurationError(f"SESSION_KEY_PREFIX must be a string, got {prefix!r}")
    if all(values.get(key) is None for key in MIGRATE_KEYS):
        return _NoFlaskSession(permanent=bool(values.get("SESSION_PERMANENT", False)))
    from .migrate import flask_session_setup

    return flask_session_setup(app, values, prefix)


def default_store_url(app: Flask) -> str:
    """``sqlite:///`` + a file in the app's instance folder, which is created if missing."""
    os.makedirs(app.instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(app.instance_path, "flask_serversession.sqlite3")


def _store(app: Flask, values: Mapping[str, Any], given: Store | str | None) -> Store:
    from .stores import store_from_url

    store = given if given is not None else values.get("SESSION_STORE")
    if store is None:
        store = default_store_url(app)
    if isinstance(store, Store):
        return store
    if isinstance(store, str):
        options: dict[str, Any] = {}
        prefix = values.get("SESSION_KEY_PREFIX")
        if prefix is not None:
            if not isinstance(prefix, str):
                raise ConfigurationError(f"SESSION_KEY_PREFIX must be a string, got {prefix!r}")
            options["key_prefix"] = prefix
        create_table = values.get("SESSION_SQL_CREATE_TABLE")
        if create_table is not None:
            options["create_table"] = bool(create_table)
        return store_from_url(store, **options)
    raise ConfigurationError(f"SESSION_STORE must be a URL or a Store, got {type(store).__name__}")


def _seconds(
    values: Mapping[str, Any], key: str, default: Any, *, allow_zero: bool = False
) -> float:
    value = values.get(key)
    if value is None:
        value = default
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{key} must be a number of seconds or a timedelta, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{key} must be positive, got {value!r}")
    return float(value)


def _int(values: Mapping[str, Any], key: str, default: int) -> int:
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{key} must be a positive integer, got {value!r}")
    return value


def _str(values: Mapping[str, Any], key: str, default: str) -> str:
    value = values.get(key) or default
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string, got {value!r}")
    return value


def _samesite(value: Any) -> str | None:
    if value is None:
        return "Lax"
    if value is False:
        return None  # explicitly no attribute
    if isinstance(value, str) and value.capitalize() in ("Lax", "Strict", "None"):
        return value.capitalize()
    raise ConfigurationError(
        f"SESSION_COOKIE_SAMESITE must be 'Lax', 'Strict' or 'None', got {value!r}"
    )
