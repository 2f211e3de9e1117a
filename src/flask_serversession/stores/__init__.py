"""Stores, and the registry that builds one from a URL (``store_from_url("sqlite:///app.db")``).

The registry maps a URL scheme to ``"module:Class"``; the module (and its driver) is imported
only when a store of that scheme is built, so an app that uses SQLite never imports redis.
Adding a store never touches the core: call :func:`register_store`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from ..errors import ConfigurationError
from .base import Capabilities, Patch, Record, Store, Touch, values_size
from .helpers import redact

__all__ = [
    "Capabilities",
    "Patch",
    "Record",
    "Store",
    "Touch",
    "register_store",
    "store_from_url",
    "values_size",
]


class _FromUrl(Protocol):
    def from_url(self, url: SplitResult, **options: Any) -> Store: ...


_REDIS = "flask_serversession.stores.redis:RedisStore"
_SQL = "flask_serversession.stores.sql:SQLStore"

#: scheme -> ("module:Class", the pip extra that brings its driver, if any)
_registry: dict[str, tuple[str, str | None]] = {
    "memory": ("flask_serversession.stores.memory:MemoryStore", None),
    "sqlite": ("flask_serversession.stores.sqlite:SQLiteStore", None),
    "redis": (_REDIS, "redis"),
    "rediss": (_REDIS, "redis"),
    "redis+sentinel": (_REDIS, "redis"),
    "redis+cluster": (_REDIS, "redis"),
    "valkey": (_REDIS, "redis"),
    "valkeys": (_REDIS, "redis"),
    "postgresql": (_SQL, "sql"),
    "postgresql+psycopg": (_SQL, "sql"),
    "postgresql+psycopg2": (_SQL, "sql"),
    "postgresql+pg8000": (_SQL, "sql"),
    "mysql": (_SQL, "sql"),
    "mysql+pymysql": (_SQL, "sql"),
    "mysql+mysqldb": (_SQL, "sql"),
    "mariadb": (_SQL, "sql"),
    "mariadb+pymysql": (_SQL, "sql"),
    "mariadb+mariadbconnector": (_SQL, "sql"),
    "memcached": ("flask_serversession.stores.memcached:MemcachedStore", "memcached"),
}


def register_store(scheme: str, target: str, extra: str | None = None) -> None:
    """Build stores for URLs of ``scheme`` with ``target``, a ``"module:Class"`` string.

    The class needs a ``from_url(url: urllib.parse.SplitResult, **options) -> Store`` class
    method, as :meth:`Store.from_url`; it names the ``options`` it takes (``key_prefix``,
    ``create_table``) as keyword parameters.
    ``extra`` names the pip extra (or package) that brings its driver, for error messages.
    """
    if ":" not in target:
        raise ValueError(f"target must be 'module:Class', got {target!r}")
    _registry[scheme.lower()] = (target, extra)


def store_from_url(url: str, **options: Any) -> Store:
    """Build the store a URL names, e.g. ``"memory://"`` or ``"sqlite:///path/to/file.db"``.

    ``options`` come from configuration keys that apply to some stores only: ``key_prefix``
    (``SESSION_KEY_PREFIX``, Redis and Memcached; the URL's own ``prefix`` wins) and
    ``create_table`` (``SESSION_SQL_CREATE_TABLE``, SQL). A store given one it has no use for
    raises :class:`ConfigurationError`.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"SESSION_STORE: not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    entry = _registry.get(scheme)
    base, plus, driver = scheme.partition("+")
    if entry is None and base == "postgres":
        # What Heroku and many hosts hand out; SQLAlchemy (and so we) know it as postgresql.
        raise ConfigurationError(
            f"SESSION_STORE: {scheme}:// is not a scheme SQLAlchemy knows: write"
            f" postgresql{plus}{driver}:// instead (in {redact(parts)!r})"
        )
    if entry is None:
        known = ", ".join(f"{name}://" for name in sorted(_registry))
        raise ConfigurationError(
            f"SESSION_STORE: no store for URL scheme {scheme!r} (in {redact(parts)!r});"
            f" known schemes: {known}"
        )
    target, extra = entry
    module_name, _, class_name = target.partition(":")

    def missing_driver(exc: ImportError) -> ConfigurationError:
        hint = f": pip install 'flask-serversession[{extra}]'" if extra else ""
        return ConfigurationError(
            f"SESSION_STORE: the {scheme}:// store needs a driver that is not installed"
            f" ({exc.name or exc}){hint}"
        )

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise missing_driver(exc) from exc
    factory: _FromUrl = getattr(module, class_name)
    unknown = sorted(set(options) - _accepted(factory.from_url, options))
    if unknown:
        keys = {"key_prefix": "SESSION_KEY_PREFIX", "create_table": "SESSION_SQL_CREATE_TABLE"}
        names = ", ".join(sorted(keys.get(name, name) for name in unknown))
        raise ConfigurationError(f"SESSION_STORE: {scheme}:// stores take none of {names}")
    try:
        return factory.from_url(parts, **options)
    except ImportError as exc:  # a store that imports its driver as it is built (Redis)
        raise missing_driver(exc) from exc


def _accepted(from_url: Callable[..., Any], options: dict[str, Any]) -> set[str]:
    """The names of ``options`` that ``from_url`` takes, read from its signature."""
    parameters = list(inspect.signature(from_url).parameters.values())[1:]  # after the URL
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return set(options)
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
