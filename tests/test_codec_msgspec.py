"""The codec with msgspec and without: the same text either way (Flask's walk's, byte for byte),
read back exactly by our decoder, by Flask's own tagger where it knows the types, and by a
release that predates msgspec (which reads with Flask's walk)."""

from __future__ import annotations

import json
import math
import textwrap
from collections import OrderedDict
from datetime import timedelta, timezone
from typing import Any

import pytest
from flask.json.tag import TaggedJSONSerializer
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup
from test_codec_fast_path import codec  # noqa: F401 - the autouse fixture: every codec path
from test_serialization import _same
from without_module import run_without

from flask_serversession import serialization
from flask_serversession.errors import SessionDataError
from flask_serversession.serialization import dumps_value, loads_value

walk = serialization._serializer
#: The encoder this process chose at import, before any test swaps it.
_ENCODER_AT_IMPORT = serialization._encode_plain
flask_tagger = TaggedJSONSerializer()


def _walk_dumps(value: Any) -> str:
    """What every release before msgspec wrote (Flask's walk, then json.dumps)."""
    return json.dumps(walk.tag(value), separators=(",", ":"), allow_nan=False)


def _walk_loads(text: str) -> Any:
    """How a release before msgspec read."""
    return walk._untag_scan(json.loads(text))


#: Text reaching every escape: control characters, DEL, non-ASCII, astral, quotes, backslashes.
text = st.text(
    st.one_of(
        st.characters(max_codepoint=0x7F),
        st.sampled_from("\x7f\x80\xe9\u2028\u2029\ufeff\U0001f600\\\"'/<>&"),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=12,
)
floats = st.one_of(
    st.floats(),  # NaN and the infinities too
    st.sampled_from([1e16, 9999999999999998.0, 1e-4, 9.999999999999999e-05, 1e-5, -0.0, 5e-324]),
    st.sampled_from([1.7976931348623157e308, 1e22, 0.1, 123456789.123]),
)
ints = st.one_of(st.integers(), st.integers(min_value=2**63 - 2, max_value=2**130))
offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
#: Every type the README lists, at the top level and nested.
listed_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    text,
    st.binary(max_size=8),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), offsets)),
    st.builds(Markup, text),
)
#: Keys shaped like our tags, so dicts that look tagged are generated too. (Not Flask's " d":
#: Flask's tagger would read such a dict as its http-date datetime, which our codec never writes.)
tag_keys = st.sampled_from([" t", " di", " b", " m", " u", " dt", " da", " f", " s", " fs"])
keys = st.one_of(text, tag_keys)
hashable = st.one_of(st.integers(), text, st.booleans(), st.none())
listed_values = st.recursive(
    listed_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
        st.sets(hashable, max_size=4),
        st.frozensets(hashable, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(listed_values)
def test_every_listed_type_round_trips_and_old_readers_read_it(value: Any) -> None:
    text = dumps_value("k", value)
    assert text.isascii()
    assert _same(loads_value(text), value)
    # The text a release before msgspec wrote: what is stored stays readable, and a downgrade
    # reads what this one writes.
    assert text == _walk_dumps(value)
    assert _same(_walk_loads(text), value)


#: The types Flask's own cookie session keeps, as Flask tags them (it has no tag for sets, dates
#: or non-finite floats, and drops a datetime's microseconds and offset).
flask_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.binary(max_size=8),
    st.uuids(),
    st.builds(Markup, text),
)
#: Keys that mean the same to both: the tags both have. A one-key dict keyed by a tag only one
#: of them has (Flask's " d", our " dt", " f", ...) is a tag to that one and data to the other.
_ALL_TAG_KEYS = serialization._TAG_KEYS | frozenset(flask_tagger.tags)
common_keys = st.one_of(
    text.filter(lambda key: key not in _ALL_TAG_KEYS),
    st.sampled_from(sorted(serialization._TAG_KEYS & frozenset(flask_tagger.tags))),
)
flask_values = st.recursive(
    flask_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(common_keys, children, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(flask_values)
def test_flasks_tagger_reads_what_we_write(value: Any) -> None:
    text = dumps_value("k", value)
    assert _same(flask_tagger.loads(text), value)
    assert _same(loads_value(flask_tagger.dumps(value)), value)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_msgspec_writes_floats_as_repr_where_the_fast_path_lets_it(value: float) -> None:
    """The claim :func:`serialization._prints_alike` rests on, checked on msgspec itself."""
    msgspec = pytest.importorskip("msgspec")
    if serialization._prints_alike(value):
        assert msgspec.json.encode(value).decode() == repr(value)
    assert dumps_value("k", [value]) == f"[{value!r}]"


@pytest.mark.parametrize("char", [chr(n) for n in range(0x80)] + ["\x80", "\u2028", "\U0001f600"])
def test_every_character_is_escaped_as_json_escapes_it(char: str) -> None:
    for value in ([char], {char: char}, "x" * 100 + char):
        assert dumps_value("k", value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [
        ["\ud800"],  # a lone surrogate: msgspec refuses it, json escapes it
        "\udfff" * 100,
        [10**4000],
        [1e16, -1e-5, math.nan, math.inf],
        [{" t": [1]}],
        {" di": {"x": (1,)}},
    ],
)
def test_what_msgspec_cannot_write_as_json_does_takes_the_other_path(value: Any) -> None:
    text = dumps_value("k", value)
    assert text == _walk_dumps(value)
    assert _same(loads_value(text), value)


def _general_table_dict() -> dict[Any, Any]:
    """Str keys only, but CPython's dict keeps the layout it took for a key that was not."""
    value: dict[Any, Any] = {0: 0} | {f"k{n}": n for n in range(10)}
    del value[0]
    return value


def _wide(inner: Any) -> list[Any]:
    return [{"n": n, "inner": inner} for n in range(10)]


@pytest.mark.parametrize(
    "value",
    [
        _general_table_dict(),
        _wide(_general_table_dict()),
        _wide(OrderedDict(b=1, a=2)),
        _wide({" t": [1]}),
        _wide({" di": 1, "x": 2}),
        _wide([1e300, 2.5]),
        _wide([-1e-300, 0.0, -0.0]),
        _wide(math.inf),
        _wide("caf\u00e9" * 30),
        [[0] * 10] * 10,  # one list, shared
        {f"k{n}": [[[n]]] for n in range(10)},
    ],
)
def test_large_values_give_the_walks_text(value: Any) -> None:
    text = dumps_value("k", value)
    assert text == _walk_dumps(value)
    assert _same(loads_value(text), _walk_loads(text))


def test_large_values_refuse_what_the_walk_refuses() -> None:
    loop: list[Any] = list(range(10))
    loop.append(loop)
    for value in (loop, _wide({1: "int key"}), _wide(bytearray(b"x")), [object()] * 10):
        with pytest.raises(SessionDataError):
            dumps_value("k", value)


def test_msgspec_is_used_where_installed() -> None:
    pytest.importorskip("msgspec")
    assert _ENCODER_AT_IMPORT is serialization._encode_with_msgspec


#: Values of every listed type, built the same way in this process and in one without msgspec.
_SAMPLE = textwrap.dedent(
    """
    import math, uuid
    from datetime import date, datetime, timedelta, timezone
    from markupsafe import Markup

    when = datetime(2026, 12, 4, 5, 52, 8, 123456, tzinfo=timezone(timedelta(hours=-5)))
    sample = [
        None, True, 0, -(2**70), 1.5, 1e16, math.nan, "caf\\u00e9 \\U0001f600\\x7f", b"\\x00\\xff",
        uuid.UUID(int=42), date(1990, 5, 17), when, Markup("<b>hi</b>"), (1, "a"), {1, 2},
        frozenset({"x"}), {" t": [1, (2,)]}, {"cart": [{"sku": "A", "price": 9.99}] * 3},
        ["x" * 200, "\\u00e9" * 100, {"deep": [[[[{"k": -0.0}]]]]}],
    ]
    """
)

_WITHOUT_MSGSPEC = _SAMPLE + textwrap.dedent(
    """
    import json
    import sys

    from flask_serversession import serialization
    from flask_serversession.serialization import dumps_value, loads_value

    assert "msgspec" not in sys.modules
    assert serialization._encode_plain is serialization._encode
    assert serialization._fast_parse is serialization._scan_parse
    texts = [dumps_value("k", value) for value in sample]
    assert repr([loads_value(text) for text in texts]) == repr(sample)
    print(json.dumps(texts))
    """
)


def test_without_msgspec_the_same_text_is_written_and_read() -> None:
    written = run_without("msgspec", _WITHOUT_MSGSPEC)
    namespace: dict[str, Any] = {}
    exec(_SAMPLE, namespace)
    texts = [dumps_value("k", value) for value in namespace["sample"]]
    assert json.loads(written) == texts
    assert repr([loads_value(text) for text in texts]) == repr(namespace["sample"])


def test_a_value_sharing_lists_exponentially_costs_no_memory_to_check() -> None:
    shared: list[Any] = list(range(8))
    for _level in range(25):  # 2**25 paths through 25 lists
        shared = [shared, shared, *range(8)]
    assert not serialization._is_plain_by_level(shared)


class _Attributes:
    pass


def test_a_dict_whose_values_live_in_an_object_never_hides_another_ones_int_key() -> None:
    """From Python 3.13 ``gc.get_referents(vars(obj))`` lists none of the values (the object
    holds them); counted by level, that shortfall made up for another dict's int key, and the
    value was written as plain JSON: the key turned into "1" and the tuple into a list."""
    holder = _Attributes()
    holder.pair = (1, 2)  # type: ignore[attr-defined]
    value = [{1: "int key"}, vars(holder), *range(8)]
    assert not serialization._is_plain_by_level(value)
    with pytest.raises(SessionDataError, match="int"):
        dumps_value("k", value)
