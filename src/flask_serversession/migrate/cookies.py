"""Flask's own signed-cookie sessions: reading one, and what tells apart the clients sending it."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from flask import Request

from ..signals import RejectionReason


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


def flask_cookie_session(
    cookie: str, keys: tuple[Any, ...], max_age: float
) -> tuple[dict[str, Any] | None, RejectionReason | None]:
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


def lifetime_seconds(value: Any) -> float:
    """``PERMANENT_SESSION_LIFETIME`` in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
