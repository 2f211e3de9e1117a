"""The codec's fast paths give exactly what Flask's tag walk gives: the same text written (so a
value read and handed back unchanged is never rewritten), the same values read."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup
from test_serialization import _same, values

from flask_serversession import serialization
from flask_serversession.errors import SessionDataCorrupt, SessionDataError
from flask_serversession.serialization import dumps_value, loads_value

walk = serialization._serializer


#: The fast lane (``make check``) runs the codec as installed; ``make test`` runs every path.
_OTHER_PATHS = [
    pytest.param(p, marks=pytest.mark.slow) for p in ("stdlib", "by-level", "by-container")
]


@pytest.fixture(autouse=True, params=["installed", *_OTHER_PATHS])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with the codec as installed (msgspec's where it is), with the stdlib's
    alone, and with every value checked by level (as large ones are) or by container (as
    small ones are, and every one where gc.get_referents lists less than CPython's)."""
    if request.param == "stdlib":
        monkeypatch.setattr(serialization, "_fast_parse", serialization._scan_parse)
        monkeypatch.setattr(serialization, "_encode_plain", serialization._encode)
    elif request.param == "by-level":
        monkeypatch.setattr(serialization, "_MANY_ITEMS", 0)
    elif request.param == "by-container":
        monkeypatch.setattr(serialization, "_BY_LEVEL", False)


def _walk_dumps(value: Any) -> str:
    return json.dumps(walk.tag(value), separators=(",", ":"), allow_nan=False)


def _walk_loads(text: str) -> Any:
    return walk._untag_scan(json.loads(text))


wide = st.recursive(
    st.one_of(values, st.sampled_from([math.inf, -math.inf, 2**80, -(2**70), 1e300, 5e-324])),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from([" t", " di", " s", "a", " b__", ""]), children),
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(wide)
def test_the_same_text_as_flasks_walk_and_the_same_value_back(value: Any) -> None:
    text = dumps_value("k", value)
    assert text == _walk_dumps(value)
    assert _same(loads_value(text), _walk_loads(text))


def _deep(depth: int) -> Any:
    value: Any = 1
    for _level in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {" t": [1, 2]},
        {" di": {"x": 1}},
        [{" m": "<b>"}, Markup("<i>")],
        math.nan,
        [1.5, -0.0, 1e16],
        OrderedDict(a=1),  # a subclass: Flask's walk, as before
        type("Html", (str,), {"__html__": lambda self: "<p>"})("x"),
        _deep(49),
        _deep(60),
    ],
)
def test_edge_values_take_the_path_that_gives_the_same_text(value: Any) -> None:
    text = dumps_value("k", value)
    assert text == _walk_dumps(value)
    assert repr(loads_value(text)) == repr(_walk_loads(text))


@pytest.mark.parametrize("value", [{1: "a"}, [{"x": {2: "b"}}], {"k": bytearray(b"x")}])
def test_what_the_walk_refuses_is_still_refused(value: Any) -> None:
    with pytest.raises(SessionDataError):
        dumps_value("k", value)


@pytest.mark.parametrize(
    "text", [' {"a": 1} ', "[1] x", "\ufeff[1]", "", '"\\ud800"', "NaN", b'{"a":[1]}']
)
def test_text_around_or_odd_reads_as_json_loads_reads_it(text: str | bytes) -> None:
    try:
        expected = walk._untag_scan(json.loads(text))
    except ValueError:
        with pytest.raises(SessionDataCorrupt):
            loads_value(text)
        return
    loaded = loads_value(text)
    assert loaded == expected or (math.isnan(loaded) and math.isnan(expected))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from([*serialization._TAG_KEYS, "a", " x", ""]), children),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_untagging_gives_what_flasks_scan_gives_or_fails_as_it_does(decoded: Any) -> None:
    try:
        expected = repr(walk._untag_scan(decoded))
    except Exception as exc:
        with pytest.raises(type(exc)):
            serialization._untag(decoded)
        return
    assert repr(serialization._untag(decoded)) == expected
