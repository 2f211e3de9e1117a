"""Lazy values: a value is decoded when the view first reads it, and encoded again at save only
if the view was handed it and it can change in place (or it was assigned). Counted, not timed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from rejections import rejections

from flask_serversession import ServerSession, serialization
from flask_serversession import interface as interface_module
from flask_serversession.ids import store_key
from flask_serversession.stores import Patch
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.testing import CountingStore

#: Forty values of every kind, as an ordinary session might hold, plus "user".
VALUES: dict[str, Any] = {
    **{f"text{i}": f"value number {i} " * 8 for i in range(10)},
    **{f"list{i}": list(range(i, i + 20)) for i in range(10)},
    **{f"dict{i}": {"a": i, "b": [1, 2, {"c": "x" * 30}]} for i in range(10)},
    **{f"tuple{i}": (i, "t", b"bytes") for i in range(5)},
    **{f"set{i}": {i, i + 1, "s"} for i in range(5)},
}


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many values were decoded and encoded, and which (``decode:<text>``, ``encode:<key>``)."""
    counter: Counter[str] = Counter()
    loads, dumps = serialization.loads_value, serialization.dumps_value

    def counting_loads(text: str | bytes) -> Any:
        counter["decode"] += 1
        return loads(text)

    def counting_dumps(key: str, value: Any) -> str:
        counter["encode"] += 1
        counter[f"encode:{key}"] += 1
        return dumps(key, value)

    monkeypatch.setattr(serialization, "loads_value", counting_loads)
    monkeypatch.setattr(interface_module, "dumps_value", counting_dumps)
    yield counter


def _app(store: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = "lazy"
    app.testing = True
    ServerSession(app, store=store, cleanup_interval=0)

    @app.get("/fill")
    def fill() -> str:
        session.update(VALUES)
        session["user"] = "alice"
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("user"))

    @app.get("/read-list")
    def read_list() -> str:
        return str(session["list3"])

    @app.get("/append")
    def append() -> str:
        session["list3"].append(99)
        return "ok"

    @app.get("/write")
    def write() -> str:
        session.get("user")
        session["n"] = 7
        return "ok"

    @app.get("/keys")
    def keys() -> str:
        return f"{len(session)} {'text0' in session} {'nope' in session} {sorted(session)[0]}"

    @app.get("/delete")
    def delete() -> str:
        del session["list4"]
        return "ok"

    @app.get("/all")
    def everything() -> str:
        return str(len(dict(session.items())))

    @app.get("/same")
    def same() -> str:
        session["dict1"] = dict(session["dict1"])
        return "ok"

    return app


def _filled(store: Any) -> tuple[Flask, FlaskClient]:
    app = _app(store)
    client = app.test_client()
    assert client.get("/fill").text == "ok"
    return app, client


def test_a_value_never_read_is_never_decoded_nor_encoded(counts: Counter[str]) -> None:
    store = CountingStore(MemoryStore())
    _app_, client = _filled(store)
    counts.clear()
    store.calls.clear()
    assert client.get("/read").text == "alice"
    assert counts["decode"] == 1  # "user" alone
    assert counts["encode"] == 0  # a str handed out cannot change in place
    assert store.total == 1  # the load; nothing written


def test_writing_one_key_encodes_that_key_only(counts: Counter[str]) -> None:
    store = CountingStore(MemoryStore())
    _app_, client = _filled(store)
    counts.clear()
    store.calls.clear()
    client.get("/write")
    assert counts["decode"] == 1
    assert counts["encode"] == 1 and counts["encode:n"] == 1
    assert store.calls["patch"] == 1


def test_a_mutable_value_handed_out_is_compared_and_a_nested_change_saved(
    counts: Counter[str],
) -> None:
    store = CountingStore(MemoryStore())
    _app_, client = _filled(store)
    counts.clear()
    store.calls.clear()
    client.get("/read-list")
    assert counts["decode"] == 1
    assert counts["encode"] == 1 and counts["encode:list3"] == 1  # handed out: compared
    assert store.calls["patch"] == 0  # unchanged: not written
    counts.clear()
    client.get("/append")  # no session.modified = True
    assert counts["encode"] == 1 and store.calls["patch"] == 1
    assert client.get("/read-list").text == str([*range(3, 23), 99])


def test_len_in_iteration_and_delete_need_no_decode(counts: Counter[str]) -> None:
    store = CountingStore(MemoryStore())
    _app_, client = _filled(store)
    counts.clear()
    assert client.get("/keys").text == f"{len(VALUES) + 1} True False dict0"
    client.get("/delete")
    assert counts["decode"] == 0 and counts["encode"] == 0
    record = store.load(store_key(_session_id(client)))
    assert record is not None and "list4" not in record.values and "list5" in record.values


def test_items_decode_every_value_and_encode_only_the_mutable_ones(
    counts: Counter[str],
) -> None:
    _app_, client = _filled(MemoryStore())
    counts.clear()
    assert client.get("/all").text == str(len(VALUES) + 1)
    assert counts["decode"] == len(VALUES) + 1
    mutable = [key for key, value in VALUES.items() if isinstance(value, (list, dict, tuple, set))]
    assert counts["encode"] == len(mutable)


def test_an_equal_new_object_writes_nothing(counts: Counter[str]) -> None:
    store = CountingStore(MemoryStore())
    _app_, client = _filled(store)
    store.calls.clear()
    client.get("/same")
    assert store.calls["patch"] == 0


def test_values_come_back_with_their_types_after_lazy_loading() -> None:
    app, client = _filled(MemoryStore())
    cookie = client.get_cookie("session")
    assert cookie is not None
    with app.test_request_context("/", headers={"Cookie": f"session={cookie.value}"}):
        request_session: Any = session
        assert request_session["set1"] == VALUES["set1"]
        assert type(request_session["tuple2"]) is tuple
        assert dict(request_session) == {**VALUES, "user": "alice"}
        assert request_session == {**VALUES, "user": "alice"}
        assert request_session.copy() == {**VALUES, "user": "alice"}
        assert request_session.pop("text1") == VALUES["text1"]
        assert request_session.setdefault("text2", "other") == VALUES["text2"]
        assert request_session.popitem() == ("user", "alice")


def _session_id(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value.split(".")[0]


def _plant(store: MemoryStore, client: FlaskClient, name: str, text: str) -> str:
    key = store_key(_session_id(client))
    assert store.patch(key, Patch({name: text}, (), 0.0, 9e12))
    return key


@pytest.mark.parametrize("path", ["/read", "/all", "/write"])
def test_a_corrupt_value_is_reported_and_dropped_when_read(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A planted value (never ours) found when first read: the same outcome as an unreadable
    load: HTTP 200 with a new, empty session, logged, ``session_rejected("corrupt")``, the
    record deleted; what the request writes goes into a new session."""
    store = MemoryStore()
    app, client = _filled(store)
    reasons = rejections(app)
    key = _plant(store, client, "user", "\x80\x04K\x01.not json")
    old = _session_id(client)
    with caplog.at_level(logging.ERROR, "flask_serversession"):
        response = client.get(path)
    assert response.status_code == 200
    assert reasons == ["corrupt"] and "unreadable" in caplog.text
    assert store.load(key) is None
    if path == "/read":
        assert response.text == "None"
        assert client.get_cookie("session") is not None  # the old cookie, now unknown
    if path == "/all":
        assert response.text == "0"
    if path == "/write":
        assert _session_id(client) != old  # a new session holds the value written
        assert client.get("/keys").text == "1 False False n"


def test_a_corrupt_value_never_read_costs_nothing() -> None:
    """Not decoded, so not found: the session serves the values the view reads; the planted
    text is never executed, and is found the first time anything reads it."""
    store = MemoryStore()
    app, client = _filled(store)
    reasons = rejections(app)
    _plant(store, client, "list0", '{" t":1}')
    assert client.get("/read").text == "alice"
    assert client.get("/write").status_code == 200
    assert reasons == []
    assert client.get("/all").text == "0"
    assert reasons == ["corrupt"]
