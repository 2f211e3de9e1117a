"""Timing session loads against stores of many sizes, for scale_bench.py: the sessions, a store
of them (scale_stores.py makes one per kind), the timed calls, the summaries.

Sessions are reproducible from a tag and an index (their ID, their user), so a store bulk-loaded
with a million of them can be read back at random. A measurement prepares all its calls before
any clock runs, times each call on its own with the store sizes interleaved call by call, and
checks every answer after the clocks stopped. Then the summary per size (medians, percentiles,
ratios to the smallest store) and ``clear_expired`` of many expired sessions.
"""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from harness import SECRET_KEY, BenchmarkError, percentile, progress, rotated
from report import Cell, spread

from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.stores import Record, Store, Touch

#: The mode that times ``GET /get`` through the test client; every other mode times
#: ``store.load`` with the touch the caller gives.
TESTCLIENT_GET = "testclient-get"
DAY = 24 * 3600.0
#: The library's defaults: 30 minutes idle, 30 days in all.
IDLE_TIMEOUT = 30 * 60.0
ABSOLUTE_TIMEOUT = 30 * DAY
#: Touch interval of the scale stores: shorter than the idle timeout (the library requires it)
#: and longer than any live session has been idle, so that a measured read is a read.
SCALE_TOUCH_INTERVAL = 20 * 60.0
CLEAR_BATCH_SIZE = 1000  # SESSION_CLEANUP_BATCH_SIZE's default
EXPIRED_SESSIONS = 100_000

Prepared = tuple[list[Callable[[], Any]], Callable[[list[Any]], None]]


@dataclass(frozen=True)
class Stored:
    """One session as a store keeps it."""

    key: str
    values: dict[str, str]
    created: float
    last_seen: float
    expires: float
    absolute_expires: float
    user_id: str | None = None
    ended: bool = False
    version: int = 1


@dataclass
class ScaleTarget:
    """One store of ``size`` reproducible sessions (of ``tag``) and a test client of an app on
    it, with how to add sessions in the store's own format and count them (scale_stores.py)."""

    kind: str
    size: int
    tag: str
    store: Store
    client: FlaskClient
    insert: Callable[[Iterable[Stored]], None]
    count: Callable[[], int]
    #: What the store occupies, measured right after the load.
    footprint: Callable[[], dict[str, Any]]
    load_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.size}"

    def load(self, now: float, seed: int) -> None:
        """The live sessions in, timed (generating, writing and analyzing them), counted, and
        a sample of them read back, directly and through the app."""
        started = time.perf_counter()
        self.insert(live_sessions(self.tag, self.size, now, seed))
        self.load_seconds = time.perf_counter() - started
        if self.count() != self.size:
            raise BenchmarkError(f"{self.label}: not all {self.size:,} sessions arrived")
        self.details = {"rows_per_second": round(self.size / self.load_seconds)}
        self.details.update(self.footprint())
        progress(f"{self.label}: {self.size:,} sessions in {self.load_seconds:.1f} s")
        rng = random.Random(f"{seed}:{self.tag}:sample")
        sample = [0, self.size - 1, *(rng.randrange(self.size) for _ in range(20))]
        for mode in ("load", TESTCLIENT_GET):
            calls, check = prepare_calls(self, mode, sample, not_due)
            check([call() for call in calls])


def not_due(now: float) -> Touch:
    """A touch that is not due: the scale stores' sessions were seen in the last 10 minutes."""
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


def session_id_of(tag: str, index: int) -> str:
    """A reproducible session ID (43 URL-safe characters, like a real one) for ``index``."""
    digest = hashlib.sha256(f"bench:{tag}:{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def user_of(index: int) -> str:
    return f"user{index}"


@functools.cache
def _signer() -> CookieSigner:
    return CookieSigner([SECRET_KEY])


def cookie_header(session_id: str) -> dict[str, str]:
    """The request header of a browser holding the session's cookie."""
    return {"Cookie": f"session={_signer().sign(session_id)}"}


def prepare_calls(
    target: ScaleTarget, mode: str, indices: Sequence[int], touch: Callable[[float], Touch]
) -> Prepared:
    """The calls of one measurement, made before any clock runs, and the check of their
    answers (run after the clocks stopped): each must find its live session's user. A load
    mode loads with ``touch(now)``; ``testclient-get`` sends the session's cookie."""
    now = time.time()
    ids = [session_id_of(target.tag, i) for i in indices]
    calls: list[Callable[[], Any]]
    if mode == TESTCLIENT_GET:
        get = target.client.get
        calls = [
            functools.partial(get, "/get", headers=cookie_header(i), buffered=True) for i in ids
        ]
    else:
        load = target.store.load
        calls = [functools.partial(load, store_key(i), touch(now)) for i in ids]

    def user(answer: Any) -> Any:
        if isinstance(answer, Record):
            return json.loads(answer.values.get("user", "null")) if answer.is_live(now) else None
        return answer.get_data(as_text=True) if answer and answer.status_code == 200 else None

    def check(answers: list[Any]) -> None:
        for index, answer in zip(indices, answers, strict=True):
            if user(answer) != user_of(index):
                raise BenchmarkError(f"{target.label} {mode}: session {index} answered {answer!r}")

    return calls, check


def time_interleaved(
    targets: Sequence[ScaleTarget],
    mode: str,
    calls: int,
    rng: random.Random,
    shift: int,
    touch: Callable[[float], Touch],
) -> dict[int, list[float]]:
    """``calls`` calls per store size, each on a session drawn at random from its whole store,
    interleaved call by call (the order rotated at each step) and each timed: whatever disturbs
    the machine hits every size alike. µs per call, per size."""
    prepared = {
        t.size: prepare_calls(t, mode, [rng.randrange(t.size) for _ in range(calls)], touch)
        for t in targets
    }
    times: dict[int, list[float]] = {t.size: [] for t in targets}
    answers: dict[int, list[Any]] = {t.size: [] for t in targets}
    sizes = [t.size for t in targets]
    clock = time.perf_counter
    gc.collect()
    for step in range(calls):
        for size in rotated(sizes, step + shift):
            call = prepared[size][0][step]
            started = clock()
            answer = call()
            times[size].append(clock() - started)
            answers[size].append(answer)
    for size, (_, check) in prepared.items():
        check(answers[size])
    return {size: [t * 1e6 for t in values] for size, values in times.items()}


def live_sessions(tag: str, count: int, now: float, seed: int) -> Iterator[Stored]:
    """Live sessions as the store writes them: serialized values (user, cart, a CSRF token,
    half of them permanent), created in the last 20 days, seen in the last 10 minutes (so their
    touch is not due), 70% with a user ID (the stores that index it may ignore it)."""
    rng = random.Random(f"{seed}:{tag}")
    uniform, randrange, chance, bits = rng.uniform, rng.randrange, rng.random, rng.getrandbits
    dumps = json.dumps
    for index in range(count):
        cart = [randrange(1, 500) for _ in range(randrange(0, 5))]
        values = {
            "user": dumps(user_of(index)),
            "cart": dumps(cart, separators=(",", ":")),
            "csrf_token": dumps(f"{bits(160):040x}"),
        }
        if chance() < 0.5:
            values["_permanent"] = "true"
        created = now - uniform(3600, 20 * DAY)
        last_seen = now - uniform(0, 600)
        absolute = created + ABSOLUTE_TIMEOUT
        user_id = user_of(index) if chance() < 0.7 else None
        expires = min(last_seen + IDLE_TIMEOUT, absolute)
        key = store_key(session_id_of(tag, index))
        yield Stored(
            key, values, created, last_seen, expires, absolute, user_id, False, randrange(1, 40)
        )


def expired_sessions(
    tag: str, count: int, now: float, seed: int, tombstones: float
) -> Iterator[Stored]:
    """Sessions past their end, at most a week ago: a fraction ``tombstones`` of them logouts'
    tombstones, the others idle for longer than the idle timeout."""
    rng = random.Random(f"{seed}:{tag}")
    for index in range(count):
        key = store_key(session_id_of(tag, index))
        if rng.random() < tombstones:
            until = now - rng.uniform(60, 7 * DAY)
            yield Stored(key, {}, until, until, until, until, None, True, 1)
            continue
        expires = now - rng.uniform(60, 7 * DAY)
        created = expires - IDLE_TIMEOUT - rng.uniform(0, 3 * DAY)
        values = {"user": json.dumps(user_of(index)), "cart": "[]"}
        seen = expires - IDLE_TIMEOUT
        absolute = created + ABSOLUTE_TIMEOUT
        yield Stored(key, values, created, seen, expires, absolute, None, False, 3)


def summarize_scale(
    per_round: dict[str, dict[int, list[list[float]]]], sizes: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per size and mode (from µs per call, round by round): median, p90, p99 over all calls,
    the range of round medians, and the ratio to the smallest store, overall and per round."""
    summary: dict[str, dict[str, dict[str, Any]]] = {str(size): {} for size in sizes}
    smallest = min(sizes)
    for mode, by_size in per_round.items():
        base = statistics.median(itertools.chain.from_iterable(by_size[smallest]))
        base_rounds = [statistics.median(r) for r in by_size[smallest]]
        for size in sizes:
            every = list(itertools.chain.from_iterable(by_size[size]))
            medians = [statistics.median(r) for r in by_size[size]]
            summary[str(size)][mode] = {
                "median_us": statistics.median(every),
                "p90_us": percentile(every, 0.9),
                "p99_us": percentile(every, 0.99),
                "round_median_min_us": min(medians),
                "round_median_max_us": max(medians),
                "ratio_to_smallest": statistics.median(every) / base,
                "round_ratios": [m / b for m, b in zip(medians, base_rounds, strict=True)],
            }
    return summary


def time_modes(
    targets: Sequence[ScaleTarget],
    modes: Sequence[str],
    rounds: int,
    calls: int,
    rng: random.Random,
    touch: Callable[[str, float], Touch],
    label: str,
) -> tuple[dict[str, dict[int, list[list[float]]]], list[list[str]]]:
    """Every mode, ``rounds`` times (the modes rotated each round): µs per call, per mode, size
    and round; and the orders."""
    per_round: dict[str, dict[int, list[list[float]]]] = {
        mode: {t.size: [] for t in targets} for mode in modes
    }
    order = []
    for round_index in range(rounds):
        order.append(rotated(modes, round_index))
        for mode in order[-1]:
            mode_touch = functools.partial(touch, mode)
            timed = time_interleaved(targets, mode, calls, rng, round_index, mode_touch)
            for size, values in timed.items():
                per_round[mode][size].append(values)
        progress(f"{label} scale: round {round_index + 1}/{rounds} done")
    return per_round, order


def measure_clear_expired(
    store: Store, live: int, count: int, stored: Callable[[], int], add: Callable[[], None]
) -> dict[str, Any]:
    """``count`` expired sessions added (by ``add``) to a store of ``live`` ones, then one
    ``clear_expired`` with the default batch size; every live session must still be there."""
    add()
    if stored() != live + count:
        raise BenchmarkError("clear_expired: the expired sessions did not all arrive")
    started = time.perf_counter()
    removed = store.clear_expired(time.time(), batch_size=CLEAR_BATCH_SIZE)
    seconds = time.perf_counter() - started
    left = stored()
    if removed != count or left != live:
        raise BenchmarkError(
            f"clear_expired removed {removed} of {count} expired sessions, {left} left of"
            f" {live} live ones"
        )
    # The last batch finds fewer than a full one; when they divide evenly, one more finds none.
    batches = math.ceil(count / CLEAR_BATCH_SIZE) + (1 if count % CLEAR_BATCH_SIZE == 0 else 0)
    progress(f"clear_expired removed {removed:,} in {seconds:.2f} s")
    return {
        "live_sessions": live,
        "expired_sessions": count,
        "batch_size": CLEAR_BATCH_SIZE,
        "statements": batches,
        "seconds": seconds,
        "rows_per_second": removed / seconds,
        "ms_per_batch": seconds / batches * 1e3,
        "live_sessions_after": left,
    }


def clear_expired_note(clear: dict[str, Any], what: str) -> str:
    return (
        f"`clear_expired` of {clear['expired_sessions']:,} expired sessions{what} added to the"
        f" {clear['live_sessions']:,}-session store, batch size {clear['batch_size']:,}:"
        f" **{clear['seconds']:.2f} s** ({clear['rows_per_second']:,.0f} rows/s,"
        f" {clear['statements']} batches, {clear['ms_per_batch']:.1f} ms each);"
        f" {clear['live_sessions_after']:,} live sessions left, as before."
    )


def us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def scale_rows(kind: str, result: dict[str, Any], modes: Sequence[str]) -> list[dict[str, Any]]:
    """The latency table's rows of one store: per mode and size (with the log bytes per call
    where the run measured them)."""
    logs = result.get("log_bytes_per_call", {})
    return [
        {**result["summary"][str(size)][mode], "store": kind, "mode": mode, "size": size}
        | {"log": logs.get(str(size), {}).get(mode)}
        for mode in modes
        for size in result["sizes"]
    ]


SCALE_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("store", "{store}"),
    ("mode", "{mode}"),
    ("sessions", "{size:,}"),
    ("median µs", lambda e: us(e["median_us"])),
    ("p90 µs", lambda e: us(e["p90_us"])),
    ("p99 µs", lambda e: us(e["p99_us"])),
    (
        "round medians µs",
        lambda e: f"{us(e['round_median_min_us'])}-{us(e['round_median_max_us'])}",
    ),
    ("vs smallest", "{ratio_to_smallest:.2f}x"),
    ("per round", lambda e: spread(e["round_ratios"])),
)
