"""The value codec against Flask's tagger, both ways, on a ~13 KB session of 41 values: ``flask``
(``TaggedJSONSerializer``), ``tagger`` (Flask's tag walk in this library's serializer) and
``ours`` (``dumps_value``, ``loads_value``). Prints the table, writes no file. See README.md.

    python benchmarks/codec_bench.py [--rounds 15] [--number 200] [--quick]
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import report  # noqa: E402
from flask.json.tag import TaggedJSONSerializer  # noqa: E402

from flask_serversession import serialization  # noqa: E402
from flask_serversession.serialization import dumps_value, loads_value  # noqa: E402

#: At least this many times faster than Flask's tagger, both ways (issue 16).
GOAL = 5.0


def sample_session() -> dict[str, Any]:
    """41 values, ~14 KB encoded: mostly plain JSON, a few tagged (datetimes, tuples, a UUID)."""
    now = datetime(2026, 12, 4, 5, 52, 8, 123456, tzinfo=timezone.utc)
    cart = [
        {
            "sku": f"SKU-{n:05d}",
            "name": f"Product number {n} in a longer name",
            "qty": n % 3 + 1,
            "price": 9.99 + n,
            "options": {"size": "M", "colour": "blue", "gift": n % 2 == 0},
        }
        for n in range(24)
    ]
    wizard = {
        f"step{n}": {"done": n < 3, "fields": {f"f{k}": f"answer {n}.{k}" for k in range(6)}}
        for n in range(10)
    }
    values: dict[str, Any] = {
        "user": "alice",
        "user_id": 123456,
        "email": "alice@example.test",
        "locale": "en_GB",
        "timezone": "Europe/London",
        "theme": "dark",
        "csrf_token": "c" * 40,
        "access_token": "a" * 2400,
        "refresh_token": "r" * 800,
        "id_token": "i" * 1800,
        "token_expires": now + timedelta(hours=1),
        "scopes": ["openid", "profile", "email", "offline_access", "read:orders"],
        "cart": cart,
        "cart_total": 321.5,
        "wizard": wizard,
        "wizard_step": 3,
        "recent": list(range(1000, 1030)),
        "last_login": now,
        "birthday": date(1990, 5, 17),
        "device": uuid.UUID(int=42),
        "_flashes": [("message", "Saved."), ("error", "Check the form.")],
        "_permanent": True,
        "preferences": {"newsletter": False, "items_per_page": 50, "sort": "price"},
        "filters": {"category": ["shoes", "bags"], "price": [10, 200], "in_stock": True},
        "search_history": [f"query number {n}" for n in range(30)],
        "ab_tests": {f"exp{n}": "variant-b" for n in range(8)},
        "consent": {"analytics": True, "ads": False, "version": 3},
        "referrer": "https://example.test/some/landing/page?utm_source=news",
        "visits": 42,
        "notes": "a note of some length " * 30,
    }
    for n in range(41 - len(values)):
        values[f"extra{n}"] = {"id": n, "label": f"extra value {n}", "tags": ["a", "b", "c"]}
    return values


def _flask_codec() -> tuple[Callable[[str, Any], str], Callable[[str], Any]]:
    flask = TaggedJSONSerializer()
    return (lambda _key, value: flask.dumps(value)), flask.loads


def _tagger_codec() -> tuple[Callable[[str, Any], str], Callable[[str], Any]]:
    ours = serialization._serializer

    def dumps(_key: str, value: Any) -> str:
        return json.dumps(ours.tag(value), separators=(",", ":"), allow_nan=False)

    def loads(text: str) -> Any:
        return ours._untag_scan(json.loads(text))

    return dumps, loads


def measure(rounds: int, number: int) -> dict[str, dict[str, list[float]]]:
    """µs to encode and to decode the whole sample session, per codec and round."""
    values = sample_session()
    codecs = {"flask": _flask_codec(), "tagger": _tagger_codec()}
    codecs["ours"] = (dumps_value, loads_value)
    texts = {
        name: {key: dumps(key, value) for key, value in values.items()}
        for name, (dumps, _) in codecs.items()
    }
    for name in ("tagger", "ours"):  # (Flask's drops microseconds, offsets and dates)
        loads = codecs[name][1]
        assert {k: loads(t) for k, t in texts[name].items()} == values, name
    # What ours writes must read back as the tagger's and stay the text it wrote before.
    assert texts["ours"] == texts["tagger"]
    times: dict[str, dict[str, list[float]]] = {n: {"encode": [], "decode": []} for n in codecs}
    for _round in range(rounds):
        for name, (dumps, loads) in codecs.items():
            stored = texts[name]

            def encode(dumps: Any = dumps) -> None:
                for key, value in values.items():
                    dumps(key, value)

            def decode(loads: Any = loads, stored: dict[str, str] = stored) -> None:
                for text in stored.values():
                    loads(text)

            times[name]["encode"].append(timeit.timeit(encode, number=number) / number * 1e6)
            times[name]["decode"].append(timeit.timeit(decode, number=number) / number * 1e6)
    return times


def main(argv: Sequence[str]) -> int:
    args = report.parse(__doc__, argv, quick={"rounds": 3, "number": 20}, rounds=15, number=200)
    session = sample_session()
    size = sum(len(k) + len(dumps_value(k, v)) for k, v in session.items())
    times = measure(args.rounds, args.number)
    rows: list[dict[str, Any]] = [
        {"codec": name, "way": way, "best": min(us), "median": statistics.median(us)}
        | {"best_x": min(times["flask"][way]) / min(us)}
        | {"median_x": statistics.median(times["flask"][way]) / statistics.median(us)}
        for name, ways in times.items()
        for way, us in ways.items()
    ]
    met = min(row["best_x"] for row in rows if row["codec"] == "ours") >= GOAL
    table = report.columns(
        "codec: {codec} | way: {way} | best µs: {best:.0f} | median µs: {median:.0f}"
        " | speed-up (best): {best_x:.1f}x | speed-up (median): {median_x:.1f}x"
    )
    goal = (
        f"Goal: ours >= {GOAL:.0f}x faster than Flask's tagger both ways (best of the rounds,"
        f" as timeit advises on a shared machine): {'MET' if met else 'MISSED'}"
    )
    intro = [f"Session: {len(session)} values, {size:,} bytes encoded; {args.rounds} rounds."]
    sections = [report.Section(None, (), table, "llrrrr", rows, [goal])]
    command = f"python benchmarks/codec_bench.py --rounds {args.rounds} --number {args.number}"
    print(report.render("Value codec against Flask's tagger", intro, sections, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
