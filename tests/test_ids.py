"""Session IDs, cookie signing with key rotation, store keys."""

from __future__ import annotations

import base64
import hashlib

from flask_serversession.ids import CookieSigner, new_session_id, store_key


def test_ids_are_256_bits_and_unique() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in list(ids)[:10]:
        assert len(base64.urlsafe_b64decode(session_id + "=")) == 32


def test_store_key_is_sha256_of_id() -> None:
    session_id = new_session_id()
    digest = hashlib.sha256(session_id.encode()).digest()
    assert base64.urlsafe_b64decode(store_key(session_id) + "=") == digest
    assert session_id not in store_key(session_id)


def test_sign_and_unsign() -> None:
    signer = CookieSigner(["current"])
    session_id = new_session_id()
    assert signer.unsign(signer.sign(session_id)) == (session_id, None)


def test_rotation_accepts_fallbacks_and_signs_with_current() -> None:
    old = CookieSigner(["old"])
    rotated = CookieSigner(["new", "old"])
    session_id = new_session_id()
    assert rotated.unsign(old.sign(session_id)) == (session_id, None)
    assert rotated.sign(session_id) == CookieSigner(["new"]).sign(session_id)
    assert CookieSigner(["other"]).unsign(old.sign(session_id)) == (None, "bad-signature")


def test_rejections() -> None:
    signer = CookieSigner(["k"])
    good = signer.sign(new_session_id())
    # A middle character of the signature: the last one carries padding bits a decoder ignores.
    i = len(good) - 10
    flipped = good[:i] + ("A" if good[i] != "A" else "B") + good[i + 1 :]
    assert signer.unsign(flipped)[1] == "bad-signature"
    assert signer.unsign("x" * 129) == (None, "too-long")
    assert signer.unsign("żółw") == (None, "malformed")
    assert signer.unsign(signer.sign("short-id")) == (None, "malformed")
    assert signer.unsign(signer.sign("a" * 42 + "!")) == (None, "malformed")
    assert signer.unsign("") == (None, "bad-signature")
