"""Tagged JSON per value: exact round trips, clear refusals, no pickle."""

from __future__ import annotations

import math
import pickle
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from flask_serversession.errors import SessionDataCorrupt, SessionDataError
from flask_serversession.serialization import dumps_value, loads_value

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc))),
    st.builds(Markup, st.text()),
)
hashable = st.one_of(st.integers(), st.text(), st.booleans())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.sets(hashable, max_size=4),
        st.frozensets(hashable, max_size=4),
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same type all the way down, dict keys in the same order, NaN equal to NaN
    and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and repr(a) == repr(b))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip_is_exact(value: Any) -> None:
    text = dumps_value("k", value)
    assert text.isascii()
    assert _same(loads_value(text), value)


def test_special_floats() -> None:
    for value in (math.inf, -math.inf):
        assert loads_value(dumps_value("f", value)) == value
    assert math.isnan(loads_value(dumps_value("f", math.nan)))


def test_datetime_keeps_offset_and_microseconds() -> None:
    value = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    loaded = loads_value(dumps_value("when", value))
    assert loaded == value and loaded.utcoffset() == timedelta(hours=-5)
    assert loaded.microsecond == 123456


def test_equal_sets_serialize_equally() -> None:
    a = set(range(100))
    b = set(reversed(range(100)))
    assert dumps_value("s", a) == dumps_value("s", b)


@pytest.mark.parametrize(
    "value",
    [object(), Decimal("1.5"), {1: "int key"}, {"ok": [{(1, 2): "tuple key"}]}, lambda: None],
)
def test_unsupported_values_raise_naming_the_key(value: Any) -> None:
    with pytest.raises(SessionDataError) as info:
        dumps_value("the_key", value)
    assert info.value.key == "the_key"
    assert "the_key" in str(info.value)


def test_circular_value_raises() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SessionDataError):
        dumps_value("loop", loop)


@pytest.mark.parametrize(
    "text",
    [
        pickle.dumps({"a": 1}),
        b"\x80\x04\x95",
        "{not json",
        '{" b": 5}',
        '{" u": "zz"}',
        '{" dt": "yesterday"}',
        '{" f": "1e999"}',
        "[" * 100_000,
    ],
)
def test_foreign_data_is_corrupt_never_executed(text: str | bytes) -> None:
    with pytest.raises(SessionDataCorrupt):
        loads_value(text)


def test_pickle_payload_is_not_executed(tmp_path: Any) -> None:
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    with pytest.raises(SessionDataCorrupt):
        loads_value(pickle.dumps(Exploit()))
    assert not marker.exists()


def test_dates_are_not_datetimes() -> None:
    loaded = loads_value(dumps_value("d", date(2026, 1, 1)))
    assert type(loaded) is date
    assert type(loads_value(dumps_value("u", uuid.UUID(int=1)))) is uuid.UUID


@pytest.mark.parametrize("name", ["nul\x00key", "lone\ud800surrogate"])
def test_key_names_every_store_can_hold(name: str) -> None:
    with pytest.raises(SessionDataError) as info:
        dumps_value(name, 1)
    assert info.value.key == name
