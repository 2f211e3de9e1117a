"""Forwarding records: where a moved session went, sealed under the app's secret key.

See :mod:`flask_serversession.migrate` ("Requests in parallel with the same old cookie").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from ..ids import is_session_id
from ..interface import AUXILIARY_INFO
from ..stores import Record

#: The ID an imported Flask-Session record is keyed by: ``store_key(IMPORTED_PREFIX + sid)``.
IMPORTED_PREFIX = "flask-session:"


def imported_id(sid: str) -> str:
    """The ID a session bulk-imported from Flask-Session waits under until its first use."""
    return IMPORTED_PREFIX + sid


#: The ID under which the request that moves a Flask-Session session leaves its new ID, sealed,
#: for requests that overlapped it: ``store_key(MOVED_PREFIX + sid)``.
MOVED_PREFIX = "flask-session-moved:"
#: Seconds that forwarding lasts: the parallel requests of one page load come well within.
MOVE_GRACE = 10.0
_FORWARD_VALUE = "to"


def moved_id(sid: str) -> str:
    """The ID of the forwarding record of the session moved from Flask-Session's ``sid``."""
    return MOVED_PREFIX + sid


#: Bytes of the random nonce that makes each seal's pad its own, and of the tag that
#: authenticates a seal.
_NONCE_BYTES = 16
_TAG_BYTES = 16


def _keys(secret: str | bytes, origin: str, nonce: bytes) -> tuple[bytes, bytes]:
    """The pad key and the tag key of one seal: HMAC-SHA512 of the origin and a fresh nonce
    under the app's secret key, so that no two seals share a pad, even for one origin."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = b"flask-serversession moved\0" + nonce + b"\0" + origin.encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def _pad(pad_key: bytes, size: int) -> bytes:
    return hmac.new(pad_key, b"pad", hashlib.sha512).digest()[:size]


def _tag(tag_key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return hmac.new(tag_key, nonce + sealed, hashlib.sha256).digest()[:_TAG_BYTES]


def seal_forward(new_id: str, origin: str, secret: str | bytes) -> str:
    """``new_id`` sealed for the forwarding record of ``origin``, as hex: a random nonce, the
    ID XORed with a pad derived from the secret key, the origin and that nonce (so a pad is
    never used twice, even when one origin moves twice), and a tag over both (so a changed
    seal opens to nothing)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    pad_key, tag_key = _keys(secret, origin, nonce)
    raw = new_id.encode("ascii")
    sealed = bytes(a ^ b for a, b in zip(raw, _pad(pad_key, len(raw)), strict=True))
    return (nonce + sealed + _tag(tag_key, nonce, sealed)).hex()


def open_forward(sealed: str, origin: str, secret: str | bytes) -> str | None:
    """The new ID :func:`seal_forward` sealed, or ``None`` if ``sealed`` is not a seal of ours
    for ``origin`` (another key, another origin, or changed)."""
    try:
        raw = bytes.fromhex(sealed)
    except ValueError:
        return None
    if not _NONCE_BYTES + _TAG_BYTES < len(raw) <= _NONCE_BYTES + 64 + _TAG_BYTES:
        return None
    nonce, body, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:]
    pad_key, tag_key = _keys(secret, origin, nonce)
    if not hmac.compare_digest(tag, _tag(tag_key, nonce, body)):
        return None
    opened = bytes(a ^ b for a, b in zip(body, _pad(pad_key, len(body)), strict=True))
    try:
        new_id = opened.decode("ascii")
    except ValueError:
        return None
    return new_id if is_session_id(new_id) else None


#: The ``info`` of a forwarding record, which the management API leaves out of its listings.
_FORWARD_INFO = AUXILIARY_INFO


def forward_record(new_id: str, sid: str, secret: str | bytes, now: float) -> Record:
    """The forwarding record: live for :data:`MOVE_GRACE` seconds, holding the sealed ID."""
    sealed = json.dumps(seal_forward(new_id, sid, secret))
    end = now + MOVE_GRACE
    return Record({_FORWARD_VALUE: sealed}, now, now, end, end, info=_FORWARD_INFO)


def is_forwarding(record: Record) -> bool:
    """Whether ``record`` is a forwarding record, not a session."""
    return record.info == _FORWARD_INFO


def forwarded_id(record: Record | None, sid: str, secret: str | bytes, now: float) -> str | None:
    """The new ID a live forwarding record points to, else ``None``."""
    if record is None or not record.is_live(now):
        return None
    sealed = record.values.get(_FORWARD_VALUE)
    try:
        text = json.loads(sealed) if sealed is not None else None
    except ValueError:
        return None
    return open_forward(text, sid, secret) if isinstance(text, str) else None
