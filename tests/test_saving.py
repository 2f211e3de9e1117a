"""The pure half of saving: what a session hands over, and the step decided from it. No store."""

from __future__ import annotations

from typing import Any

import pytest

from flask_serversession.saving import Changes, SaveStep, decide_save, needs_cookie
from flask_serversession.serialization import dumps_value
from flask_serversession.session import ServerSideSession
from flask_serversession.stores import Record

SID = "x" * 43


def _record(user_id: str | None = None) -> Record:
    return Record({"a": "1"}, 0.0, 0.0, 100.0, 200.0, user_id=user_id)


class _Origin:
    def claim_id(self, now: float) -> str:
        return SID


def _changes(**fields: Any) -> Changes:
    base: dict[str, Any] = {
        "session_id": SID,
        "loaded": True,
        "record": _record(),
        "values": {"a": 1},
        "stored": {"a": "1"},
        "originals": {},
    }
    base.update(fields)
    return Changes(**base)


CASES: dict[str, tuple[dict[str, Any], SaveStep]] = {
    "destroyed first, whatever else": ({"destroy_id": SID, "ended": True}, "destroy"),
    "ended meanwhile": ({"ended": True}, "drop"),
    "ended meanwhile, but a login": ({"ended": True, "bind_user": "u"}, "patch"),
    "assigned without reading": ({"loaded": False, "record": None}, "patch-unloaded"),
    "new and empty": ({"session_id": None, "record": None, "values": {}}, "skip"),
    "new with values": ({"session_id": None, "record": None}, "create"),
    "new, empty, but a login": (
        {"session_id": None, "record": None, "values": {}, "bind_user": "u"},
        "create",
    ),
    "made by a plug-in": (
        {"session_id": None, "record": None, "origin": _Origin()},
        "create-or-join",
    ),
    "made by a plug-in, with a login": (
        {"session_id": None, "record": None, "origin": _Origin(), "bind_user": "u"},
        "create",
    ),
    "emptied": ({"values": {}}, "delete"),
    "emptied, bound to a user": ({"values": {}, "record": _record("u")}, "patch"),
    "emptied at login": ({"values": {}, "bind_user": "u", "rotate": True}, "regenerate"),
    "regenerated": ({"rotate": True}, "regenerate"),
    "loaded": ({}, "patch"),
}


@pytest.mark.parametrize("fields, step", CASES.values(), ids=CASES.keys())
def test_decide_save(fields: dict[str, Any], step: SaveStep) -> None:
    assert decide_save(_changes(**fields)) == step


def test_diff_serializes_only_what_may_have_changed() -> None:
    loaded_text = "kept"
    cart = [1, 2]
    calls: list[str] = []

    def serialize(key: str, value: Any) -> str:
        calls.append(key)
        return dumps_value(key, value)

    changes = _changes(
        values={"text": loaded_text, "cart": [*cart, 3], "new": 1},
        stored={
            "text": dumps_value("text", loaded_text),
            "cart": dumps_value("cart", cart),
            "gone": dumps_value("gone", 1),
        },
        originals={"text": loaded_text},
    )
    diff = changes.diff(serialize)
    assert sorted(calls) == ["cart", "new"]  # the immutable value never replaced is skipped
    assert set(diff.changed) == {"cart", "new"}
    assert diff.deleted == ["gone"]
    assert set(diff.serialized) == {"text", "cart", "new"}


def test_a_session_hands_over_its_changes_as_one_value() -> None:
    session = ServerSideSession(None, None)
    session["a"] = 1
    session.login("alice")
    changes = session.hand_over()
    assert changes.values == {"a": 1}
    assert changes.rotate and changes.bind_user == "alice"
    assert changes.loaded and changes.session_id is None and changes.record is None
    assert decide_save(changes) == "create"
    session.destroy()
    changes = session.hand_over()
    assert changes.bind_user is None and not changes.rotate
    assert changes.values == {}  # what was written before destroy() is not saved
    assert decide_save(changes) == "skip"


def test_a_value_moved_in_needs_its_cookie() -> None:
    moved = ServerSideSession.moving_in(
        lambda session: session.set_loaded(_record(), {"a": "1"}, {"a": 1}, session_id=SID)
    )
    assert moved.handle is None and not moved.is_loaded
    moved.load()
    changes = moved.hand_over()
    assert changes.session_id == SID and changes.cookie_pending
    assert needs_cookie(changes)
    assert decide_save(changes) == "patch"
    assert not needs_cookie(_changes())
