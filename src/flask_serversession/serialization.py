"""Values to text and back: tagged JSON, one document per top-level session key. Never pickle.

Built on Flask's own :class:`~flask.json.tag.TaggedJSONSerializer`, so every type Flask's cookie
session keeps (dict, list, tuple, bytes, str, int, float, bool, None, Markup, UUID, datetime)
comes back as it went in, and more exactly: datetimes keep microseconds and their UTC offset,
and ``set``, ``frozenset``, ``date`` and non-finite floats are kept too. Anything else raises,
naming the session key, instead of being turned into a string behind the user's back.

The JSON is plain ASCII, so every store can keep it as text.

Flask's walk asks each tag in turn about every node, in Python; most values need no tag at all.
So a value of plain JSON types goes straight to the stdlib's C encoder, one with tags is tagged
by exact type (:func:`_fast_tag`), and only anything else (a subclass, a value to refuse) takes
Flask's walk. Reading, text with no tag mark (``{" ``) is plain JSON and needs no untagging.
Either way the text is the one Flask's walk writes and the values are the ones it reads, so what
is stored stays readable and an unchanged value never looks changed.
"""

from __future__ import annotations

import json
import math
from base64 import b64encode
from collections.abc import Callable
from datetime import date, datetime
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
        # The stdlib encoder, not the app's JSON provider: that one turns unknown objects into
        # strings, and a session must give back what it was given or refuse it.
        if type(value) is str:
            return encode_basestring_ascii(value)
        if _is_plain(value, 0):
            try:
                return _encode(value)
            except ValueError:
                pass  # a NaN or an infinity, which only a tag can carry
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
            return self._untag_scan(decoded)
        try:
            decoded = _fast_parse(value)
        except Exception:
            decoded = json.loads(value)  # whitespace around, or not JSON: json.loads decides
        # Every tag is a one-key object whose key begins with a space, written '{" '; inside a
        # JSON string a quote is always escaped, so text without that holds no tag.
        if _TAG_MARK not in value:
            return decoded
        return self._untag_scan(decoded)


_serializer = _SessionJSON()
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _scan_parse(text: str) -> Any:
    """What ``json.loads`` gives for compact JSON text, without its per-call work; raises on
    anything else (the caller then asks ``json.loads``)."""
    value, end = _scan_once(text, 0)
    if end != len(text):
        raise ValueError("text after the value")
    return value


#: Reads compact JSON as ``json.loads`` does, or raises: msgspec's decoder where it is installed
#: (the ``migrate`` extra; ~2x faster), else the stdlib's scanner. msgspec gives the same values
#: where it succeeds and refuses what json.loads reads differently (NaN, lone surrogates, floats
#: beyond range), which json.loads then reads.
_fast_parse: Callable[[str], Any] = _scan_parse
try:
    from msgspec.json import decode as _msgspec_decode
except ImportError:  # pragma: no cover - msgspec is optional
    pass
else:
    _fast_parse = _msgspec_decode
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


#: The keys of the tags: a one-key dict with such a key must be tagged itself (Flask's TagDict).
_TAG_KEYS = frozenset(_serializer.tags)
_TAG_MARK = '{" '
_TAG_MARK_BYTES = b'{" '
#: Values nested deeper than this take Flask's walk, which decides what it decided before (it
#: refuses values nested too deep for its recursion, and circular ones).
_FAST_DEPTH = 50
_SCALARS = frozenset({str, int, bool, type(None)})
#: Floats too: the encoder refuses a NaN or an infinity (allow_nan=False), which then take the
#: tagging path.
_PLAIN_SCALARS = frozenset({*_SCALARS, float})
_STR = frozenset({str})


def _is_plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is JSON that needs no tag: str (not Markup), int, bool, None, float
    (when finite: see :data:`_PLAIN_SCALARS`), and lists and str-keyed dicts of those. Exact
    types only."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if depth >= _FAST_DEPTH:
        return False
    if kind is list:
        return _is_plain_list(value, depth + 1)
    if kind is dict:
        return _is_plain_dict(value, depth + 1)
    return False


def _is_plain_list(value: Any, depth: int) -> bool:
    if _PLAIN_SCALARS.issuperset(map(type, value)):  # the common case, checked in C
        return True
    for item in value:
        if type(item) not in _PLAIN_SCALARS and not _is_plain(item, depth):
            return False
    return True


def _is_plain_dict(value: dict[Any, Any], depth: int) -> bool:
    if len(value) == 1 and next(iter(value)) in _TAG_KEYS:
        return False
    if not _STR.issuperset(map(type, value)):
        return False
    return _is_plain_list(value.values(), depth)


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
