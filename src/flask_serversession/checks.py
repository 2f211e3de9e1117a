"""What ``flask sessions check`` finds: the store's answer and the security of the setup, as data.

:func:`check_app` returns a :class:`CheckReport` (one :class:`Finding` per line the command
prints), so the checks can be run and tested without the command line. Nothing here ever
quotes a secret key.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from flask import Flask

from .cli_text import span
from .config import Config
from .errors import SessionStoreUnavailable
from .ids import new_session_id, store_key
from .stores import Store
from .stores.memory import MemoryStore

__all__ = [
    "MIN_KEY_BYTES",
    "WHY_UNSUPPORTED",
    "CheckReport",
    "Finding",
    "check_app",
    "check_config",
    "check_keys",
    "check_store",
    "key_weakness",
]

#: Shortest ``SECRET_KEY`` that ``check`` accepts without a warning, in bytes.
MIN_KEY_BYTES = 32

#: What a store without a capability cannot do, completing "this store cannot ...".
WHY_UNSUPPORTED = {
    "scan": "list sessions: it has no index of them",
    "by_user": "find a user's sessions: it has no per-user index",
}

# Well-known placeholder keys, compared lower-cased with everything but letters and digits
# removed ("Change me!" -> "changeme"); and words that mark a key as a placeholder wherever
# they appear in it ("please-change-me-0123456789...").
_PLACEHOLDER_KEYS = frozenset(
    {
        "dev",
        "development",
        "changeme",
        "secret",
        "secretkey",
        "mysecret",
        "mysecretkey",
        "supersecret",
        "supersecretkey",
        "xyz",
        "abc",
        "abc123",
        "test",
        "testing",
        "default",
        "password",
        "key",
        "flask",
        "s3cr3t",
        "todo",
        "123456",
        "qwerty",
    }
)
_PLACEHOLDER_WORDS = (
    "changeme",
    "changethis",
    "replaceme",
    "yoursecret",
    "insecure",
    "notsecret",
    "notasecret",
    "placeholder",
    "secretkeyhere",
    "dontuseinproduction",
    "donotuseinproduction",
)

_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_hex())'"

Level = Literal["ok", "note", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One thing ``check`` found: ``level`` is ``"ok"``, ``"note"``, ``"warning"`` or
    ``"error"``; ``message`` is one line of text."""

    level: Level
    message: str


@dataclass(frozen=True)
class CheckReport:
    """Everything ``check`` found, in the order it prints them."""

    findings: tuple[Finding, ...]
    #: The store did not answer.
    unreachable: bool
    #: ``SECRET_KEY`` is not set.
    missing_key: bool

    def count(self, level: Level) -> int:
        """How many findings have ``level``."""
        return sum(1 for finding in self.findings if finding.level == level)


def key_weakness(key: str | bytes) -> str | None:
    """Why ``key`` is a weak ``SECRET_KEY``, or ``None``. Never quotes the key."""
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    normalized = re.sub(rb"[^a-z0-9]", b"", raw.lower()).decode("ascii")
    if normalized in _PLACEHOLDER_KEYS or any(word in normalized for word in _PLACEHOLDER_WORDS):
        return "it is a well-known placeholder"
    if len(raw) < MIN_KEY_BYTES:
        return f"it is {len(raw)} bytes long, under {MIN_KEY_BYTES}"
    if len(set(raw)) < 8:
        return "it repeats a few characters"
    return None


def check_store(store: Store) -> tuple[list[Finding], bool]:
    """Whether ``store`` answers (one real round trip, for a random key), and what it cannot
    do; and whether it was unreachable."""
    findings: list[Finding] = []
    unreachable = False
    started = time.perf_counter()
    try:
        store.load(store_key(new_session_id()))
    except SessionStoreUnavailable as exc:
        unreachable = True
        findings.append(Finding("error", f"cannot reach the store: {exc}"))
    else:
        elapsed = (time.perf_counter() - started) * 1000
        findings.append(Finding("ok", f"the store {store.name} answered in {elapsed:.1f} ms"))
    missing = [name for name in ("scan", "by_user") if not getattr(store.capabilities, name)]
    if missing:
        findings.append(
            Finding(
                "note",
                f"this store cannot {WHY_UNSUPPORTED[missing[0]]}: list, stats, revoke-user"
                " and revoke-all are not available",
            )
        )
    if isinstance(store, MemoryStore):
        findings.append(
            Finding(
                "note", "memory:// keeps sessions in this process only: lost at restart, not shared"
            )
        )
    return findings, unreachable


def check_keys(secret: object, fallbacks: Iterable[object]) -> list[Finding]:
    """Whether ``SECRET_KEY`` (``secret``) is set and strong, and each of
    ``SECRET_KEY_FALLBACKS`` strong."""
    findings: list[Finding] = []
    if not secret:
        findings.append(
            Finding("error", f"SECRET_KEY is not set: no session can be saved; {_GENERATE}")
        )
    elif isinstance(secret, (str, bytes)):
        weakness = key_weakness(secret)
        if weakness is not None:
            findings.append(Finding("warning", f"SECRET_KEY is weak: {weakness}; {_GENERATE}"))
    for index, fallback in enumerate(fallbacks):
        weakness = key_weakness(fallback) if isinstance(fallback, (str, bytes)) else None
        if weakness is not None:
            findings.append(
                Finding(
                    "warning",
                    f"SECRET_KEY_FALLBACKS[{index}] is weak: {weakness}; fallback keys"
                    " still verify cookies, so remove it",
                )
            )
    return findings


def check_config(config: Config) -> list[Finding]:
    """Cookie settings and timeouts that are insecure or do not do what they seem to. The
    cookie's are left out with ``SESSION_TRANSPORT = "header"``: no cookie is ever sent."""
    findings = [] if config.transport == "header" else _check_cookie(config)
    if config.idle_timeout >= config.absolute_timeout:
        findings.append(
            Finding(
                "note",
                f"the idle timeout ({span(config.idle_timeout)}) is not shorter than"
                f" SESSION_ABSOLUTE_TIMEOUT ({span(config.absolute_timeout)}), so it never"
                " ends a session: lower SESSION_IDLE_TIMEOUT (or PERMANENT_SESSION_LIFETIME)",
            )
        )
    return findings


def _check_cookie(config: Config) -> list[Finding]:
    """The cookie settings that are insecure."""
    findings: list[Finding] = []
    if config.cookie_samesite == "None" and not config.cookie_secure:
        findings.append(
            Finding(
                "warning",
                "SESSION_COOKIE_SAMESITE is 'None' without SESSION_COOKIE_SECURE: browsers"
                " refuse such a cookie",
            )
        )
    if not config.cookie_secure:
        findings.append(
            Finding(
                "note",
                "SESSION_COOKIE_SECURE is off: the cookie also travels over plain HTTP;"
                " fine for local development only",
            )
        )
    if not config.cookie_httponly:
        findings.append(
            Finding(
                "warning",
                "SESSION_COOKIE_HTTPONLY is off: scripts on the page (and XSS) can read the"
                " session cookie",
            )
        )
    return findings


def check_app(app: Flask, config: Config) -> CheckReport:
    """Check ``app``'s session store (``config.store``), secret keys and session
    configuration (``config``, as in effect)."""
    store_findings, unreachable = check_store(config.store)
    secret = app.secret_key
    key_findings = check_keys(secret, app.config.get("SECRET_KEY_FALLBACKS") or ())
    return CheckReport(
        findings=(*store_findings, *key_findings, *check_config(config)),
        unreachable=unreachable,
        missing_key=not secret,
    )
