"""Values to text and back: tagged JSON, one document per top-level session key. Never pickle.

Built on Flask's own :class:`~flask.json.tag.TaggedJSONSerializer`, so every type Flask's cookie
session keeps (dict, list, tuple, bytes, str, int, float, bool, None, Markup, UUID, datetime)
comes back as it went in, and more exactly: datetimes keep microseconds and their UTC offset,
and ``set``, ``frozenset``, ``date`` and non-finite floats are kept too. Anything else raises,
naming the session key, instead of being turned into a string behind the user's back.

The JSON is plain ASCII, so every store can keep it as text.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

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
        return json.dumps(self.tag(value), separators=(",", ":"), allow_nan=False)

    def loads(self, value: str | bytes) -> Any:
        return self._untag_scan(json.loads(value))


_serializer = _SessionJSON()


def dumps_value(key: str, value: Any) -> str:
    """Serialize the value of ``session[key]``; :class:`SessionDataError` names the key.

    The key itself must be text every store can hold: a string without NUL characters or lone
    surrogates (which no UTF-8 store can encode).
    """
    if not isinstance(key, str):
        raise SessionDataError(repr(key), f"session keys must be str, not {type(key).__name__}")
    if "\x00" in key or not _encodable(key):
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
