"""Values on a store, through the app: type fidelity, serialization errors, size and key limits."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timezone
from typing import Any

import pytest
from flask import session
from markupsafe import Markup

from ..errors import SessionDataError, SessionTooLarge, SessionTooManyKeys
from ..ids import store_key
from ..stores import Store, values_size
from .app import _cookie, _in_parallel, _interface, make_app
from .doubles import Clock, CountingStore


class AppLimits:
    """The ``test_app_*`` tests of :class:`StoreConformance` on values and their limits."""

    def test_app_type_fidelity(self, store: Store, transport: str) -> None:
        values: dict[str, Any] = {
            "str": "żółw",
            "int": 2**70,
            "float": 0.1,
            "bool": True,
            "none": None,
            "list": [1, [2, 3]],
            "tuple": (1, (2, "3")),
            "dict": {"a": {"b": [None]}, " t": 1},
            "tag-like dict": {" t": [1]},
            "bytes": b"\x00\xff",
            "markup": Markup("<b>hi</b>"),
            "uuid": uuid.UUID(int=7),
            "datetime": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
            "naive": datetime(2026, 1, 2, 3, 4, 5, 6),
            "date": date(2026, 11, 25),
            "set": {1, 2, 3},
            "frozenset": frozenset({"a"}),
            "inf": float("inf"),
        }
        app = make_app(store, transport=transport)

        @app.get("/store-all")
        def store_all() -> str:
            session.update(values)
            return "ok"

        @app.get("/check-all")
        def check_all() -> str:
            for name, value in values.items():
                got = session[name]
                assert got == value and type(got) is type(value), (name, got)
            assert session["tuple"][1] == (2, "3")
            return "same"

        client = app.test_client()
        client.get("/store-all")
        assert client.get("/check-all").text == "same"

    def test_app_unserializable_value_names_the_key(self, store: Store, transport: str) -> None:
        app = make_app(store, transport=transport)

        @app.get("/bad")
        def bad() -> str:
            session["fine"] = 1
            session["broken"] = object()
            return "ok"

        with pytest.raises(SessionDataError) as info:
            app.test_client().get("/bad")
        assert info.value.key == "broken" and "broken" in str(info.value)

    def test_app_max_size_names_largest_keys(self, store: Store, transport: str) -> None:
        app = make_app(store, transport=transport, max_size=1000)

        @app.get("/huge")
        def huge() -> str:
            session["small"] = "x"
            session["large"] = "y" * 2000
            return "ok"

        with pytest.raises(SessionTooLarge) as info:
            app.test_client().get("/huge")
        assert info.value.largest[0][0] == "large" and "'large'" in str(info.value)

    def test_app_max_keys_holds_for_every_save(
        self, store: Store, clock: Clock, transport: str
    ) -> None:
        """SESSION_MAX_KEYS holds however the keys come: assigned in one request, or one per
        request by views that only assign (the store counts in the step that writes); the
        error names the limit, and the session keeps what it had."""
        app = make_app(store, transport=transport, max_keys=3)

        @app.get("/many")
        def many() -> str:
            for i in range(4):
                session[f"k{i}"] = i
            return "ok"

        with pytest.raises(SessionTooManyKeys, match="over SESSION_MAX_KEYS of 3") as info:
            app.test_client().get("/many")
        assert info.value.count == 4 and info.value.limit == 3
        client = app.test_client()
        for name in ("a", "b", "c"):
            assert client.get(f"/set/{name}/1").status_code == 200
        with pytest.raises(SessionTooManyKeys):
            client.get("/set/d/1")  # assigned without a load: refused by the store
        assert client.get("/dump").json == {"a": "'1'", "b": "'1'", "c": "'1'"}
        assert client.get("/set/c/2").status_code == 200  # replacing a key is no new key
        assert client.get("/pop/a").status_code == 200
        assert client.get("/set/d/1").status_code == 200

    def test_app_max_size_caps_assign_only_growth(
        self, store: Store, clock: Clock, transport: str
    ) -> None:
        """SESSION_MAX_SIZE holds for the whole session when views only assign, each save one
        patch without a load: the store checks the session as the patch leaves it."""
        app = make_app(store, transport=transport, max_size=1000)
        _interface(app).clock = clock

        @app.get("/put/<k>/<int:n>")
        def put(k: str, n: int) -> str:
            session[k] = "x" * n  # assigned, never read
            return "stored"

        client = app.test_client()
        for path in ("/put/a/300", "/put/b/400"):  # 1 + 302, then 1 + 402 bytes
            assert client.get(path).status_code == 200
        cookie = _cookie(client)
        assert cookie is not None
        key = store_key(cookie.split(".")[0])
        with pytest.raises(SessionTooLarge) as info:
            client.get("/put/c/350")  # 1 + 352 more: 1,059 bytes
        assert (info.value.size, info.value.limit) == (1059, 1000)
        assert [name for name, _ in info.value.largest] == ["b", "c", "a"]
        assert "'b'" in str(info.value)
        record = store.load(key)
        assert record is not None and sorted(record.values) == ["a", "b"]
        assert values_size(record.values) == 706
        assert client.get("/put/b/690").status_code == 200  # replaced: 303 + 693 bytes fit
        with pytest.raises(SessionTooLarge):
            client.get("/put/d/2")
        record = store.load(key)
        assert record is not None and values_size(record.values) == 996
        assert client.get("/dump").json == {"a": repr("x" * 300), "b": repr("x" * 690)}

    def test_app_assign_only_save_checks_size_in_one_store_call(
        self, store: Store, clock: Clock, transport: str
    ) -> None:
        """The size check of an assign-only save rides on its patch: one store call, and a
        second one (a load, to name the largest keys) only when it is refused."""
        counting = CountingStore(store)
        app = make_app(counting, transport=transport, max_size=1000)
        _interface(app).clock = clock
        client = app.test_client()
        client.get("/set/a/" + "x" * 900)
        counting.calls.clear()
        assert client.get("/set/b/" + "y" * 80).status_code == 200
        assert counting.calls == {"patch": 1}
        counting.calls.clear()
        with pytest.raises(SessionTooLarge) as info:
            client.get("/set/c/" + "z" * 80)
        assert counting.calls == {"patch": 1, "load": 1}
        assert info.value.largest[0][0] == "a"

    def test_app_max_size_holds_for_overlapping_writers(
        self, store: Store, clock: Clock, transport: str
    ) -> None:
        """Two requests read the session, then each adds a value that fits with what it read
        but not with the other's: one lands, the other raises SessionTooLarge."""
        app = make_app(store, transport=transport, max_size=1000)
        _interface(app).clock = clock
        gate = threading.Barrier(2)

        @app.get("/grow/<k>")
        def grow(k: str) -> str:
            session.get("a")  # load first, like a real view
            gate.wait(timeout=10)  # both requests have loaded before either saves
            session[k] = "y" * 400
            return "ok"

        client = app.test_client()
        client.get("/set/a/" + "x" * 300)
        cookie = _cookie(client)
        assert cookie is not None
        outcomes = _in_parallel(app, cookie, "/grow/b", "/grow/c")
        assert len(outcomes) == 2 and 200 in outcomes
        assert any(isinstance(outcome, SessionTooLarge) for outcome in outcomes)
        stored = client.get("/dump").json
        assert stored is not None and sorted(stored) in (["a", "b"], ["a", "c"])
        record = store.load(store_key(cookie.split(".")[0]))
        assert record is not None and values_size(record.values) == 706

    def test_app_max_size_never_refuses_a_change_that_only_deletes(
        self, store: Store, transport: str
    ) -> None:
        """A session over a SESSION_MAX_SIZE lowered since it was written can still shrink."""
        before = make_app(store, transport=transport)
        after = make_app(store, transport=transport, max_size=100)  # the same SECRET_KEY
        client = before.test_client()
        client.get("/set/a/" + "x" * 200)
        client.get("/set/b/1")
        cookie = _cookie(client)
        assert cookie is not None
        client = after.test_client()
        client.set_cookie("session", cookie)
        assert client.get("/pop/a").text == repr("x" * 200)
        assert client.get("/dump").json == {"b": "'1'"}
