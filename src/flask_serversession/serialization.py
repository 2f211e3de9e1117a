"""Values to text and back: tagged JSON, one document per top-level session key. Never pickle.

Built on Flask's own :class:`~flask.json.tag.TaggedJSONSerializer`, so every type Flask's cookie
session keeps (dict, list, tuple, bytes, str, int, float, bool, None, Markup, UUID, datetime)
comes back as it went in, and more exactly: datetimes keep microseconds and their UTC offset,
and ``set``, ``frozenset``, ``date`` and non-finite floats are kept too. Anything else raises,
naming the session key, instead of being turned into a string behind the user's back.

The JSON is plain ASCII, so every store can keep it as text.

Flask's walk asks each tag in turn about every node, in Python; most values need no tag at all.
So a value of plain JSON types goes straight to a C encoder (msgspec's where it is installed,
else the stdlib's), one with tags is tagged by exact type (:func:`_fast_tag`), and only anything
else (a subclass, a value to refuse) takes Flask's walk. Reading, text with no tag mark
(``{" ``) is plain JSON and needs no untagging; msgspec's decoder reads it where installed.
Every way the text is byte for byte the one Flask's walk writes and the values are the ones it
reads: what is stored stays readable, an unchanged value never looks changed, and text written
with msgspec reads the same without it (and with an older release of this library).
"""

from __future__ import annotations

import json
import math
import re
from base64 import b64encode
from collections.abc import Callable
from datetime import date, datetime
from gc import get_referents as _referents
from itertools import compress
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any
from uuid import UUID

from flask.json.tag import (
    JSONTag,
    PassList,
    TagBytes,
    TagDict,
    TaggedJSONSerializer,
    TagMarkup,
    TagTuple,
    TagUUID,
)
from markupsafe import Markup

from .errors import SessionDataCorrupt, SessionDataError

__all__ = ["dumps_value", "loads_value"]


class _StrictDict(JSONTag):
    """Dicts, refusing keys that JSON would silently turn into strings."""

    __slots__ = ()

    def check(self, value: Any) -> bool:
        return isinstance(value, dict)

    def to_json(self, value: Any) -> Any:
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be str, not {type(key).__name__} ({key!r})")
            result[key] = self.serializer.tag(item)
        return result

    tag = to_json


class _TagFloat(JSONTag):
    """NaN and infinities, which plain JSON cannot carry."""

    __slots__ = ()
    key = " f"

    def check(self, value: Any) -> bool:
        return isinstance(value, float) and not math.isfinite(value)

    def to_json(self, value: Any) -> Any:
        return repr(value)  # 'nan', 'inf', '-inf'

    def to_python(self, value: Any) -> Any:
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"not a non-finite float: {value!r}")
        return float(value)


class _TagDateTime(JSONTag):
    """Datetimes in ISO 8601, keeping microseconds and the UTC offset (Flask's tag drops both)."""

    __slots__ = ()
    key = " dt"

    def check(self, value: Any) -> bool:
        return isinstance(value, datetime)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def to_python(self, value: Any) -> Any:
        return datetime.fromisoformat(value)


class _TagDate(JSONTag):
    __slots__ = ()
    key = " da"

    def check(self, value: Any) -> bool:
        return isinstance(value, date) and not isinstance(value, datetime)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def to_python(self, value: Any) -> Any:
        return date.fromisoformat(value)


def _items_in_stable_order(serializer: TaggedJSONSerializer, value: Any) -> list[Any]:
    items = [serializer.tag(item) for item in value]
    try:
        # Equal sets then give equal text, so an unchanged set is not rewritten.
        return sorted(items)
    except TypeError:
        return items


class _TagSet(JSONTag):
    __slots__ = ()
    key = " s"

    def check(self, value: Any) -> bool:
        return isinstance(value, set)

    def to_json(self, value: Any) -> Any:
        return _items_in_stable_order(self.serializer, value)

    def to_python(self, value: Any) -> Any:
        return set(value)


class _TagFrozenSet(_TagSet):
    __slots__ = ()
    key = " fs"

    def check(self, value: Any) -> bool:
        return isinstance(value, frozenset)

    def to_python(self, value: Any) -> Any:
        return frozenset(value)


class _SessionJSON(TaggedJSONSerializer):
    __slots__ = ()

    default_tags = [
        TagDict,
        _StrictDict,
        TagTuple,
        PassList,
        TagBytes,
        TagMarkup,
        TagUUID,
        _TagFloat,
        _TagDateTime,
        _TagDate,
        _TagSet,
        _TagFrozenSet,
    ]

    def dumps(self, value: Any) -> str:
        # Our encoders (msgspec's or the stdlib's), never the app's JSON provider: that one turns
        # unknown objects into strings, and a session must give back what it was given or refuse
        # it. Most values are a scalar or plain JSON; Flask's walk is the last resort.
        kind = type(value)
        if kind is str:
            return _str_text(value)
        write_scalar = _SCALAR_WRITERS.get(kind)
        if write_scalar is not None:
            return write_scalar(value)
        if _is_plain(value, 0):
            try:
                return _encode_plain(value)
            except ValueError:
                pass  # a lone surrogate, or an int too long for text: json decides below
        try:
            return _encode(_fast_tag(value, 0))
        except _Unusual:
            # Flask's walk decides: a subclass, or a value to refuse.
            return json.dumps(self.tag(value), separators=(",", ":"), allow_nan=False)

    def loads(self, value: str | bytes) -> Any:
        if type(value) is not str:
            decoded = json.loads(value)
            if _TAG_MARK_BYTES not in value:
                return decoded
            return _untag(decoded)
        try:
            decoded = _fast_parse(value)
        except Exception:
            decoded = json.loads(value)  # whitespace around, or not JSON: json.loads decides
        # Every tag is a one-key object whose key begins with a space, written '{" '; inside a
        # JSON string a quote is always escaped, so text without that holds no tag. Only a list
        # or a dict can hold one: a long token is not searched.
        if type(decoded) not in _CONTAINERS or _TAG_MARK not in value:
            return decoded
        return _untag(decoded)


_serializer = _SessionJSON()
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _scan_parse(text: str) -> Any:
    """What ``json.loads`` gives for compact JSON text, without its per-call work; raises on
    anything else (the caller then asks ``json.loads``)."""
    value, end = _scan_once(text, 0)
    if end != len(text):
        raise ValueError("text after the value")
    return value


if c_make_encoder is not None:
    # json.dumps(value, separators=(",", ":"), allow_nan=False), built once instead of per call.
    # No cycle check: the values it gets are nested at most _FAST_DEPTH deep.
    _c_encoder = c_make_encoder(
        None, None, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def _encode(value: Any) -> str:
        return "".join(_c_encoder(value, 0))

else:  # pragma: no cover - an interpreter without the C accelerator

    def _encode(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)


#: What msgspec writes unescaped and json escapes; JSON has such characters only inside strings.
_RAW_IN_MSGSPEC = re.compile("[\x7f-\U0010ffff]+")


def _escape_as_json_does(text: str) -> str:
    return _RAW_IN_MSGSPEC.sub(lambda run: encode_basestring_ascii(run.group())[1:-1], text)


def _encode_with_msgspec(value: Any) -> str:
    """json's text for a value :func:`_is_plain` accepts, written by msgspec's encoder (~6x
    faster). The two differ only where msgspec leaves a character unescaped (non-ASCII, DEL),
    which is escaped here as json does, and in floats that ``_is_plain`` keeps away. A lone
    surrogate or an int too long for text raises ValueError, as in json."""
    raw = _msgspec_encode(value)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return _escape_as_json_does(raw.decode("utf-8"))
    return text if "\x7f" not in text else _escape_as_json_does(text)


#: Reads compact JSON as ``json.loads`` does, or raises: msgspec's decoder where it is installed
#: (~2x faster), else the stdlib's scanner. msgspec gives the same values where it succeeds and
#: refuses what json.loads reads differently (NaN, lone surrogates, floats beyond range), which
#: json.loads then reads.
_fast_parse: Callable[[str], Any] = _scan_parse
#: Writes a value :func:`_is_plain` accepts as json does: msgspec's encoder where installed,
#: else the stdlib's C encoder.
_encode_plain: Callable[[Any], str] = _encode
try:
    from msgspec.json import Encoder as _MsgspecEncoder
    from msgspec.json import decode as _msgspec_decode
except ImportError:  # pragma: no cover - msgspec is optional (the ``migrate`` extra has it)
    pass
else:
    _msgspec_encode = _MsgspecEncoder().encode
    _fast_parse = _msgspec_decode
    _encode_plain = _encode_with_msgspec


#: The keys of the tags: a one-key dict with such a key must be tagged itself (Flask's TagDict).
_TAG_KEYS = frozenset(_serializer.tags)
_TAGS_BY_KEY: dict[str, JSONTag] = dict(_serializer.tags)
_TAG_MARK = '{" '
_TAG_MARK_BYTES = b'{" '
#: Values nested deeper than this take Flask's walk, which decides what it decided before (it
#: refuses values nested too deep for its recursion, and circular ones).
_FAST_DEPTH = 50
_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({list, dict})
_PLAIN_TYPES = _SCALARS | _CONTAINERS | {float}
_STR = frozenset({str})
_FLOAT = frozenset({float})
_PLAIN_SCALARS = _SCALARS | _FLOAT


#: From this length on a str is written faster by msgspec, despite its fixed cost per call.
_LONG_STR = 80


def _str_text(value: str) -> str:
    if len(value) < _LONG_STR or _encode_plain is _encode:
        return encode_basestring_ascii(value)
    try:
        return _encode_plain(value)
    except ValueError:  # a lone surrogate, which json escapes
        return encode_basestring_ascii(value)


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return float.__repr__(value)  # as json writes it
    return _tagged_text(" f", repr(value))


def _tagged_text(key: str, text: str) -> str:
    """``_encode({key: text})``, without the encoder's cost per call."""
    return f'{{"{key}":{encode_basestring_ascii(text)}}}'


#: Exact scalar types and the text the walk and json give them (ints too long for text raise
#: ValueError there as in json), without a walk or an encoder call.
_SCALAR_WRITERS: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
    float: _float_text,
    datetime: lambda value: _tagged_text(" dt", value.isoformat()),
    date: lambda value: _tagged_text(" da", value.isoformat()),
    UUID: lambda value: _tagged_text(" u", value.hex),
    bytes: lambda value: _tagged_text(" b", b64encode(value).decode("ascii")),
    Markup: lambda value: _tagged_text(" m", str(value.__html__())),
}


def _prints_alike(value: float) -> bool:
    """Whether every encoder writes this float as ``repr`` does: finite, and in the range where
    ``repr`` uses no exponent (msgspec writes ``1e16`` and ``0.00001`` where ``repr`` writes
    ``1e+16`` and ``1e-05``)."""
    return 1e-4 <= value < 1e16 or -1e16 < value <= -1e-4 or value == 0.0


def _is_plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is JSON that needs no tag and that :data:`_encode_plain` writes as json
    does: str (not Markup), int, bool, None, floats as :func:`_prints_alike`, and lists and
    str-keyed dicts of those, nested less than :data:`_FAST_DEPTH` deep. Exact types only."""
    kind = type(value)
    if kind is list or kind is dict:
        if depth == 0 and len(value) >= _MANY_ITEMS and _BY_LEVEL:
            return _is_plain_by_level(value)
    if kind is list:
        return depth < _FAST_DEPTH and _are_plain(value, depth + 1)
    if kind is dict:
        return depth < _FAST_DEPTH and _is_plain_dict(value, depth + 1)
    if kind is float:
        return _prints_alike(value)
    return kind in _SCALARS


def _shaped_like_a_tag(value: Any) -> bool:
    """A one-key dict whose key is a tag's: Flask's TagDict marks it."""
    return type(value) is dict and len(value) == 1 and next(iter(value)) in _TAG_KEYS


def _is_plain_dict(value: dict[Any, Any], depth: int) -> bool:
    if len(value) == 1 and next(iter(value)) in _TAG_KEYS:
        return False  # shaped like a tag (_shaped_like_a_tag, inlined: this runs per dict)
    return _STR.issuperset(map(type, value)) and _are_plain(value.values(), depth)


def _are_plain(items: Any, depth: int) -> bool:
    """:func:`_is_plain` for every item (``depth`` deep), one loop per container. This check
    costs more than msgspec's encoding, so it makes no call per scalar item."""
    kinds = set(map(type, items))  # in C: most containers hold scalars only
    if kinds <= _SCALARS:
        return True
    if not kinds <= _PLAIN_TYPES:
        return False
    for item in items:
        kind = type(item)
        if kind is dict:
            if depth >= _FAST_DEPTH or not _is_plain_dict(item, depth + 1):
                return False
        elif kind is list:
            if depth >= _FAST_DEPTH or not _are_plain(item, depth + 1):
                return False
        elif kind is float and not _prints_alike(item):
            return False
    return True


#: From this many items on, a value is checked by :func:`_is_plain_by_level`, whose cost per
#: nesting level outweighs its saving per container in smaller ones.
_MANY_ITEMS = 8
#: A level with more items is left to the tagging path, which walks per container: a list
#: holding another twice, nested, doubles a level's items each time, which a walk pays in time
#: (as before) and a level in memory.
_MAX_LEVEL_ITEMS = 1 << 20


def _is_plain_by_level(value: list[Any] | dict[Any, Any]) -> bool:
    """:func:`_is_plain` for a large value, a few C calls per nesting level instead of Python
    calls per container: ``gc.get_referents`` lists the items of all lists of a level and the
    values of all its dicts at once. It lists a dict's keys too where the dict has ever held a
    key that is not a str, so a count of what it listed (one per item, one per value) shows
    that every key is a str (the other dicts take the slower path)."""
    level = [value]
    for _depth in range(_FAST_DEPTH):
        if 1 in map(len, level) and any(map(_shaped_like_a_tag, level)):
            return False
        items = _referents(*level)
        if len(items) != sum(map(len, level)) or len(items) > _MAX_LEVEL_ITEMS:
            return False
        types = [*map(type, items)]
        kinds = set(types)
        if kinds <= _SCALARS:
            return True
        if not kinds <= _PLAIN_TYPES:
            return False
        if float in kinds and not all(
            map(_prints_alike, compress(items, map(_FLOAT.__contains__, types)))
        ):
            return False
        if kinds.isdisjoint(_CONTAINERS):
            return True
        level = [*compress(items, map(_CONTAINERS.__contains__, types))]
    return False


class _Attributes:
    """An object whose ``vars()`` is a dict, for :func:`_referents_as_cpython_lists_them`."""

    def __init__(self) -> None:
        self.a = 1


def _referents_as_cpython_lists_them() -> bool:
    """Whether ``gc.get_referents`` lists what :func:`_is_plain_by_level` counts on, in any
    order (CPython before 3.13 does; its documentation promises less). Every dict must list
    all its values: from 3.13 an object's ``vars()`` lists none (the object holds them), and
    such a shortfall would make up for another dict's non-str key in a level's count."""
    items: list[Any] = [1, "a", None, 1.5, [2]]
    mapping: dict[str, Any] = {"a": 1, "b": [2]}
    holder = _Attributes()  # kept alive: it holds the values of its vars()
    attributes = vars(holder)
    try:
        return (
            sorted(map(id, _referents(items))) == sorted(map(id, items))
            and sorted(map(id, _referents(mapping))) == sorted(map(id, mapping.values()))
            and len(_referents({1: 2})) == 2
            and _referents(attributes) == [1]
        )
    except Exception:  # pragma: no cover - an interpreter without it
        return False


_BY_LEVEL = _referents_as_cpython_lists_them()


def _untag(value: Any) -> Any:
    """``_serializer._untag_scan(value)`` for decoded JSON (exact types), by type instead of
    asking each tag in turn."""
    kind = type(value)
    if kind is list:
        return [item if type(item) in _PLAIN_SCALARS else _untag(item) for item in value]
    if kind is not dict:
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        tag = _TAGS_BY_KEY.get(key)
        if tag is not None:
            return tag.to_python(_untag(inner))
    return {
        key: item if type(item) in _PLAIN_SCALARS else _untag(item) for key, item in value.items()
    }


class _Unusual(Exception):
    """A value :func:`_fast_tag` leaves to Flask's walk."""


def _fast_tag(value: Any, depth: int) -> Any:
    """What ``_serializer.tag(value)`` gives, by exact type instead of asking each tag in turn;
    :class:`_Unusual` for any other type (subclasses too), a non-str key, or deep nesting."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth >= _FAST_DEPTH:
        raise _Unusual
    tag = _TAGGERS.get(kind)
    if tag is None:
        raise _Unusual
    return tag(value, depth + 1)


def _tag_items(value: Any, depth: int) -> list[Any]:
    return [item if type(item) in _SCALARS else _fast_tag(item, depth) for item in value]


def _tag_dict(value: dict[Any, Any], depth: int) -> Any:
    if len(value) == 1:
        key = next(iter(value))
        if key in _TAG_KEYS:
            return {" di": {f"{key}__": _fast_tag(value[key], depth)}}
    for key in value:
        if type(key) is not str:
            raise _Unusual
    return {
        key: item if type(item) in _SCALARS else _fast_tag(item, depth)
        for key, item in value.items()
    }


def _tag_float(value: float, depth: int) -> Any:
    return value if math.isfinite(value) else {" f": repr(value)}


def _tag_set(value: Any, depth: int) -> list[Any]:
    items = _tag_items(value, depth)
    try:
        return sorted(items)  # as _items_in_stable_order
    except TypeError:
        return items


_TAGGERS: dict[type, Callable[[Any, int], Any]] = {
    float: _tag_float,
    list: _tag_items,
    dict: _tag_dict,
    tuple: lambda value, depth: {" t": _tag_items(value, depth)},
    bytes: lambda value, depth: {" b": b64encode(value).decode("ascii")},
    Markup: lambda value, depth: {" m": str(value.__html__())},
    UUID: lambda value, depth: {" u": value.hex},
    datetime: lambda value, depth: {" dt": value.isoformat()},
    date: lambda value, depth: {" da": value.isoformat()},
    set: lambda value, depth: {" s": _tag_set(value, depth)},
    frozenset: lambda value, depth: {" fs": _tag_set(value, depth)},
}


def dumps_value(key: str, value: Any) -> str:
    """Serialize the value of ``session[key]``; :class:`SessionDataError` names the key.

    The key itself must be text every store can hold: a string without NUL characters or lone
    surrogates (which no UTF-8 store can encode).
    """
    if not isinstance(key, str):
        raise SessionDataError(repr(key), f"session keys must be str, not {type(key).__name__}")
    if "\x00" in key or not (key.isascii() or _encodable(key)):
        raise SessionDataError(key, "the key name holds a NUL character or a lone surrogate")
    try:
        return _serializer.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SessionDataError(key, f"{type(value).__name__} value: {exc}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads_value(text: str | bytes) -> Any:
    """Deserialize one stored value; :class:`SessionDataCorrupt` if it is not ours."""
    try:
        return _serializer.loads(text)
    except Exception as exc:  # any failure on stored bytes means corrupt data
        raise SessionDataCorrupt(f"{type(exc).__name__}: {exc}") from None
