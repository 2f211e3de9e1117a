"""Rules of the store contract that every store applies the same way, written once.

A store author reads :mod:`.base` for *what* a store does; this module holds the pieces that say
*how* for the parts that do not depend on the backend: whether a touch is due, the capped idle
expiry, the check of a stored record, fork detection, the batched cleanup loop, keyset paging,
passwords kept out of messages, and the query-string options of a store's URL.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl

from ..errors import ConfigurationError, SessionDataCorrupt
from .base import Record, Touch

__all__ = [
    "Option",
    "ProcessGuard",
    "capped_expires",
    "check_values",
    "clear_in_batches",
    "decode_values",
    "keyset_pages",
    "option_defaults",
    "parse_options",
    "record_from_row",
    "redact",
    "touch_due",
]

_Row = TypeVar("_Row", bound=Sequence[Any])

# -- the contract's rules -----------------------------------------------------------------------


def touch_due(record: Record, touch: Touch | None) -> bool:
    """Whether :meth:`.Store.load` must apply ``touch`` to ``record`` (as read): the record is
    live at ``touch.now`` and was last seen before ``touch.if_seen_before``."""
    return (
        touch is not None and record.is_live(touch.now) and record.last_seen < touch.if_seen_before
    )


def capped_expires(expires: float, absolute_expires: float) -> float:
    """The idle expiry a store keeps: never after the session's absolute end."""
    return min(expires, absolute_expires)


def decode_values(data: Any) -> dict[str, str]:
    """A record's values from the JSON object a store kept them in; anything else is
    :class:`~flask_serversession.errors.SessionDataCorrupt` (a store never guesses)."""
    try:
        values = json.loads(data)
    except (TypeError, ValueError) as exc:
        raise SessionDataCorrupt(f"stored data is not JSON: {exc}") from None
    return check_values(values)


def check_values(values: Any, where: str = "stored data") -> dict[str, str]:
    """``values`` if it is an object of serialized values (name -> JSON text); refused
    otherwise."""
    if not isinstance(values, dict) or not all(
        isinstance(name, str) and isinstance(text, str) for name, text in values.items()
    ):
        raise SessionDataCorrupt(f"{where} is not an object of serialized values")
    return values


def record_from_row(row: Sequence[Any]) -> Record:
    """The record of an SQL row ``(data, created, last_seen, expires, absolute_expires,
    user_id, ended, info)``, ``data`` being the values as a JSON object."""
    data, created, last_seen, expires, absolute_expires, user_id, ended, info = row
    return Record(
        decode_values(data),
        float(created),
        float(last_seen),
        float(expires),
        float(absolute_expires),
        user_id,
        bool(ended),
        info,
    )


# -- running a store ----------------------------------------------------------------------------


class ProcessGuard:
    """Tells a store that its process was forked (gunicorn ``--preload``), once per fork, so that
    it drops the connections it inherited: two processes must never share one."""

    def __init__(self) -> None:
        self._pid = os.getpid()

    def forked(self) -> bool:
        """``True`` the first time it is asked in a new process, ``False`` otherwise."""
        pid = os.getpid()
        if pid == self._pid:
            return False
        self._pid = pid
        return True


def clear_in_batches(remove: Callable[[int], int], batch_size: int, limit: int | None) -> int:
    """The loop of :meth:`.Store.clear_expired`: ``remove(n)`` removes at most ``n`` dead
    records in one short step and says how many it removed; stop when a step finds fewer than
    asked, or after ``limit``. Return the total."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    removed = 0
    while limit is None or removed < limit:
        size = batch_size if limit is None else min(batch_size, limit - removed)
        count = remove(size)
        removed += count
        if count < size:
            break
    return removed


def keyset_pages(read_page: Callable[[str, int], Sequence[_Row]], page: int) -> Iterator[_Row]:
    """Rows a page at a time by keyset pagination: ``read_page(after, n)`` returns at most
    ``n`` rows whose first item, the key, is greater than ``after``, in key order. Each page is
    one short read, never a cursor held open while the caller works."""
    after = ""
    while True:
        rows = read_page(after, page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1][0]


def redact(url: SplitResult, query: bool = True) -> str:
    """``url`` for messages and :attr:`.Store.name`: the password replaced by ``***``, and the
    query string dropped unless ``query``."""
    netloc = url.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    return url._replace(netloc=netloc, query=url.query if query else "").geturl()


# -- URL options ----------------------------------------------------------------------------------

_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLEANS.update({"false": False, "0": False, "no": False, "off": False})


@dataclass(frozen=True)
class Option:
    """One query-string option of a store's URL, as the store declares it."""

    #: The name in the query string.
    name: str
    #: ``str``, ``int``, ``float`` (finite) or ``bool`` (``true``/``false``, ``1``/``0``,
    #: ``yes``/``no``, ``on``/``off``).
    type: type
    #: The value when the URL does not give one.
    default: Any
    #: What it does, for documentation.
    doc: str = ""
    #: The smallest value allowed, for numbers.
    minimum: float | None = None

    def parse(self, label: str, text: str) -> Any:
        """The value of ``text``; a :class:`ConfigurationError` naming the option if it is
        not one."""
        try:
            value = self._convert(text)
        except ValueError:
            raise ConfigurationError(
                f"SESSION_STORE: bad {label} option {self.name}={text!r}: {self.name} must be"
                f" {self.expected()}"
            ) from None
        return value

    def _convert(self, text: str) -> Any:
        if self.type is bool:
            if text.lower() not in _BOOLEANS:
                raise ValueError(text)
            return _BOOLEANS[text.lower()]
        if self.type is str:
            return text
        value = int(text) if self.type is int else float(text)
        if not math.isfinite(value) or (self.minimum is not None and value < self.minimum):
            raise ValueError(text)
        return value

    def expected(self) -> str:
        """What a value must be, in words."""
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return "text"
        kind = "a number (whole)" if self.type is int else "a number"
        return kind if self.minimum is None else f"{kind} of at least {self.minimum:g}"


def option_defaults(declared: Iterable[Option]) -> dict[str, Any]:
    """Every declared option's name and default."""
    return {option.name: option.default for option in declared}


def parse_options(
    label: str,
    query: str | Iterable[tuple[str, str]],
    declared: Sequence[Option],
    *,
    others: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse a URL's query string (or its name/value pairs) against the ``declared`` options.

    Return the declared options the URL gives, parsed, and the others (kept only with
    ``others``, for a store that hands them to its driver; without it an unknown option is a
    :class:`ConfigurationError` naming it). An option given twice is an error too. ``label``
    names the store in messages (``"SQLite"``).
    """
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    by_name = {option.name: option for option in declared}
    given: dict[str, Any] = {}
    rest: dict[str, str] = {}
    for name, text in pairs:
        if name in given or name in rest:
            raise ConfigurationError(f"SESSION_STORE: {label} option {name} is given twice")
        option = by_name.get(name)
        if option is not None:
            given[name] = option.parse(label, text)
        elif others:
            rest[name] = text
        else:
            known = ", ".join(by_name) or "none"
            raise ConfigurationError(
                f"SESSION_STORE: unknown {label} option {name!r}; known: {known}"
            )
    return given, rest
