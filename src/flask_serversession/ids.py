"""Session IDs: making them, signing them into a cookie value, and hashing them into store keys.

The ID is 256 random bits from :mod:`secrets`. The cookie holds ``ID.SIGNATURE`` (itsdangerous,
HMAC-SHA256 under ``SECRET_KEY``, checked also against ``SECRET_KEY_FALLBACKS``). The store never
sees the ID: it sees ``store_key(ID)``, a SHA-256 of it, so a dump of the store yields no cookie.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Sequence

from itsdangerous import BadSignature, Signer

from .errors import InvalidUserId

#: Bytes of randomness in an ID: 256 bits.
ID_BYTES = 32
#: An ID as it appears in the cookie: 43 characters of URL-safe base64 without padding.
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
#: Longer cookie values are rejected before any HMAC work. A valid one is 87 characters.
MAX_COOKIE_LENGTH = 128
_SALT = "flask-serversession"
#: The longest user id :meth:`ServerSideSession.login` accepts, in characters: what the SQL
#: stores' indexed ``user_id`` column holds (``VARCHAR(255)``, utf8mb4 on MySQL).
MAX_USER_ID_LENGTH = 255


def new_session_id() -> str:
    """A fresh random session ID (256 bits)."""
    return secrets.token_urlsafe(ID_BYTES)


def is_session_id(value: str) -> bool:
    """Whether ``value`` has the shape of one of our IDs (43 URL-safe base64 characters)."""
    return _ID_SHAPE.match(value) is not None


def store_key(session_id: str) -> str:
    """The key under which the store keeps a session: SHA-256 of the ID, URL-safe base64."""
    digest = hashlib.sha256(session_id.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_user_id(user_id: str) -> str:
    """``user_id`` if every store can index it, else raise
    :class:`~flask_serversession.errors.InvalidUserId` naming the rule it breaks.

    The rule is the common ground of the stores: PostgreSQL refuses NUL, the SQL columns hold
    255 characters, and no driver can send a lone surrogate; control characters have no place
    in a name shown on a "your devices" page or a terminal.
    """
    if not user_id:
        raise InvalidUserId("is empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidUserId(
            f"is {len(user_id):,} characters long; at most {MAX_USER_ID_LENGTH} characters"
        )
    for char in user_id:
        category = unicodedata.category(char)
        if category == "Cc":
            raise InvalidUserId(f"holds the control character {char!r}; none is allowed")
        if category == "Cs":
            raise InvalidUserId("holds a lone surrogate (not valid UTF-8); none is allowed")
    return user_id


class CookieSigner:
    """Signs IDs into cookie values and checks them, with key rotation.

    ``keys`` is ``[current, *fallbacks]``; values are signed with the current key and accepted if
    any key verifies them.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        # itsdangerous signs with the last key and tries them all when verifying.
        ordered = [key.encode() if isinstance(key, str) else key for key in reversed(keys)]
        self._signer = Signer(
            ordered, salt=_SALT, key_derivation="hmac", digest_method=hashlib.sha256
        )

    def sign(self, session_id: str) -> str:
        """The cookie value for ``session_id``."""
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, cookie_value: str) -> tuple[str | None, str | None]:
        """Return ``(session_id, None)`` for a valid value, or ``(None, reason)``.

        ``reason`` is one of ``"too-long"``, ``"malformed"`` or ``"bad-signature"``.
        """
        if len(cookie_value) > MAX_COOKIE_LENGTH:
            return None, "too-long"
        if not cookie_value.isascii():
            return None, "malformed"
        try:
            raw = self._signer.unsign(cookie_value)
        except BadSignature:
            return None, "bad-signature"
        session_id = raw.decode("ascii")
        if not is_session_id(session_id):
            # Signed by a key we hold but not an ID we could have made: never reaches the store.
            return None, "malformed"
        return session_id, None
