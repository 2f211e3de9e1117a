"""Scaling on SQLite and Redis, and the cost of the session's size.

Two parts, in one process through Flask's test client (sql_bench.py does the same scaling for
PostgreSQL and MariaDB):

- ``scale``: stores holding 1,000, 100,000 and 1,000,000 live sessions, bulk-loaded in the
  store's own format (SQLite: one ``executemany`` in one transaction, one file per size; Redis:
  pipelined HSET + PEXPIRE in batches of 10,000, one database per size, on a redis-server the
  run starts and stops itself). The sizes are interleaved call by call; each call is on a
  session drawn at random and is timed on its own: ``store.load`` (a read, touch not due) and
  ``GET /get`` through the test client. Then ``clear_expired`` of 100,000 expired sessions added
  to the 1,000,000-session SQLite file (Redis expires keys itself).
- ``size``: a session holding a value of 100 B, 1 KB, 10 KB, 100 KB and 1 MB (plus the usual
  user and cart) on ``cookie``, ``ours-sqlite`` and ``ours-redis``: µs per request of ``/get``
  (reads ``user``), ``/set`` (assigns a small value) and ``/put`` (replaces the big value). A
  cookie session over Werkzeug's 4,093-byte limit is not possible in a browser: "n/a".

    python benchmarks/scale_bench.py             # the full run, about 3 minutes
    python benchmarks/scale_bench.py --quick     # smoke check: small sizes, no files written
    python benchmarks/scale_bench.py --only size # one part; writes <date>-scale-only-size.*
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import json
import platform
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_servers import HOST, ServerProcess, Unavailable, redis_process, stopped_at_exit
from flask import Flask, session
from flask.testing import FlaskClient
from harness import (
    BASELINE,
    CART,
    SECRET_KEY,
    USER,
    BenchmarkError,
    calibrate_endpoints,
    create_app,
    load_average,
    package_versions,
    reproduce_lines,
    request_text,
    rotated,
    run_main,
    time_requests,
    write_results,
)
from scaling import percentile, session_id_of, time_interleaved, user_of, verify_sample

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.stores import Store, Touch

PARTS = ("scale", "size")
STORES = ("sqlite", "redis")
SCALE_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SCALE_SIZES = (100, 1_000, 10_000)
SCALE_MODES = ("load", "testclient-get")
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "testclient-get": "GET /get through the test client (cookie of that session)",
}
EXPIRED_SESSIONS = 100_000
CLEAR_BATCH_SIZE = 1000  # SESSION_CLEANUP_BATCH_SIZE's default
REDIS_BATCH = 10_000
SESSION_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
SIZE_VARIANTS = (BASELINE, "ours-sqlite", "ours-redis")
SIZE_ENDPOINTS = ("get", "set", "put")
SIZE_ENDPOINT_TEXT = {
    "get": "`session.get('user')`: the session is loaded, big value included",
    "set": "`session['n'] = <new number>`: a small write (ours: a patch, without loading)",
    "put": "`session['blob'] = <another value of the same size>`: the big value rewritten",
}
#: Werkzeug's max_cookie_size: browsers ignore bigger cookies, Werkzeug warns.
COOKIE_LIMIT = 4093
DAY = 24 * 3600.0
IDLE_TIMEOUT = 31 * DAY
ABSOLUTE_TIMEOUT = 30 * DAY
#: Touch interval of the scale stores: long, so that a measured read is a read, not a touch.
TOUCH_INTERVAL = 3600.0
REDIS_PREFIX = "scale:"
SIZE_REDIS_PREFIX = "size:"
PACKAGES = ("flask", "werkzeug", "flask-serversession", "redis", "matplotlib")


# -- stored sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """One session as a store keeps it."""

    key: str
    values: dict[str, str]
    created: float
    last_seen: float
    expires: float
    absolute_expires: float


def live_sessions(tag: str, count: int, now: float, seed: int) -> Iterator[Stored]:
    """Live sessions: a user, a cart and a CSRF token (serialized as the library does), created
    in the last 20 days, seen in the last 30 minutes. Not bound to a user ID (no index)."""
    rng = random.Random(f"{seed}:{tag}")
    uniform, randrange, bits = rng.uniform, rng.randrange, rng.getrandbits
    dumps = json.dumps
    for index in range(count):
        cart = [randrange(1, 500) for _ in range(randrange(0, 5))]
        values = {
            "user": dumps(user_of(index)),
            "cart": dumps(cart, separators=(",", ":")),
            "csrf_token": dumps(f"{bits(160):040x}"),
        }
        created = now - uniform(3600, 20 * DAY)
        last_seen = now - uniform(0, 1800)
        absolute = created + ABSOLUTE_TIMEOUT
        expires = min(last_seen + IDLE_TIMEOUT, absolute)
        key = store_key(session_id_of(tag, index))
        yield Stored(key, values, created, last_seen, expires, absolute)


def expired_sessions(tag: str, count: int, now: float, seed: int) -> Iterator[Stored]:
    """Sessions that reached their absolute timeout at most a week ago."""
    rng = random.Random(f"{seed}:{tag}")
    for index in range(count):
        absolute = now - rng.uniform(60, 7 * DAY)
        created = absolute - ABSOLUTE_TIMEOUT
        values = {"user": json.dumps(user_of(index)), "cart": "[]"}
        key = store_key(session_id_of(tag, index))
        yield Stored(key, values, created, absolute - rng.uniform(0, 3 * DAY), absolute, absolute)


SQLITE_INSERT = (
    "INSERT INTO serversession (key, data, created, last_seen, expires, absolute_expires,"
    " user_id, ended, info) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, NULL)"
)


def sqlite_bulk_insert(path: Path, sessions: Iterator[Stored]) -> float:
    """The sessions into the store's table in one transaction, sorted by key (the table is
    WITHOUT ROWID: rows in key order fill its pages in one pass). Seconds of the insert."""
    rows = sorted(
        (s.key, json.dumps(s.values), s.created, s.last_seen, s.expires, s.absolute_expires)
        for s in sessions
    )
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = NORMAL")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(SQLITE_INSERT, rows)
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seconds


def sqlite_count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM serversession").fetchone()[0])


def redis_bulk_insert(client: Any, prefix: str, sessions: Iterator[Stored]) -> float:
    """The sessions as the store writes them (one hash each, TTL at the idle expiry), pipelined:
    HSET + PEXPIRE, ``REDIS_BATCH`` sessions per round trip. Seconds, generation included."""
    started = time.perf_counter()
    now_ms = round(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n, s in enumerate(sessions, 1):
        expires_ms = round(min(s.expires, s.absolute_expires) * 1000)
        mapping: dict[str, int | str] = {
            "c": round(s.created * 1000),
            "s": round(s.last_seen * 1000),
            "e": expires_ms,
            "a": round(s.absolute_expires * 1000),
        }
        mapping.update({":" + name: text for name, text in s.values.items()})
        key = f"{prefix}{{{s.key}}}"
        pipe.hset(key, mapping=mapping)
        pipe.pexpire(key, max(1, expires_ms - now_ms))
        if n % REDIS_BATCH == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


# -- the scale part ------------------------------------------------------------------------------


@dataclass
class ScaleTarget:
    """One store of ``size`` sessions and an app serving it."""

    kind: str
    size: int
    tag: str
    store: Store
    client: FlaskClient
    load_seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.size}"


def _scale_app(store: str) -> tuple[Flask, Store]:
    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=store, touch_interval=TOUCH_INTERVAL, cleanup_interval=0)

    app = create_app(configure)
    return app, ServerSession.store_of(app)


def build_sqlite_target(size: int, tmp: Path, now: float, seed: int) -> ScaleTarget:
    path = tmp / f"scale-{size}.sqlite3"
    app, store = _scale_app(f"sqlite:///{path}")  # creates the table and indexes
    tag = f"sqlite-{size}"
    seconds = sqlite_bulk_insert(path, live_sessions(tag, size, now, seed))
    if sqlite_count(path) != size:
        raise BenchmarkError(f"{path.name}: not all {size:,} sessions arrived")
    details = {"file_bytes": path.stat().st_size, "rows_per_second": round(size / seconds)}
    _progress(f"sqlite: {size:,} sessions in {seconds:.1f} s")
    client = app.test_client(use_cookies=False)
    return ScaleTarget("sqlite", size, tag, store, client, seconds, details)


def build_redis_target(size: int, port: int, db: int, now: float, seed: int) -> ScaleTarget:
    import redis

    app, store = _scale_app(f"redis://{HOST}:{port}/{db}?prefix={REDIS_PREFIX}")
    tag = f"redis-{size}"
    with redis.Redis(host=HOST, port=port, db=db) as admin:
        before = int(admin.info("memory")["used_memory"])
        seconds = redis_bulk_insert(admin, REDIS_PREFIX, live_sessions(tag, size, now, seed))
        keys = int(admin.dbsize())
        after = int(admin.info("memory")["used_memory"])
    if keys != size:
        raise BenchmarkError(f"redis db {db}: {keys} keys, expected {size:,}")
    details = {
        "db": db,
        "rows_per_second": round(size / seconds),
        "used_memory_added_bytes": after - before,
        "bytes_per_session": round((after - before) / size),
    }
    _progress(f"redis: {size:,} sessions in {seconds:.1f} s")
    client = app.test_client(use_cookies=False)
    return ScaleTarget("redis", size, tag, store, client, seconds, details)


def _not_due(now: float) -> Touch:
    return Touch(now, now + IDLE_TIMEOUT, now - TOUCH_INTERVAL)


def summarize_scale(
    per_round: dict[str, dict[int, list[list[float]]]], sizes: Sequence[int]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per size and mode: median, p90, p99 over all calls, the range of round medians, and
    the median over that of the smallest store."""
    summary: dict[str, dict[str, dict[str, float]]] = {str(size): {} for size in sizes}
    for mode, by_size in per_round.items():
        smallest = statistics.median(itertools.chain.from_iterable(by_size[sizes[0]]))
        for size in sizes:
            rounds = by_size[size]
            every = list(itertools.chain.from_iterable(rounds))
            medians = [statistics.median(r) for r in rounds]
            median = statistics.median(every)
            summary[str(size)][mode] = {
                "median_us": median,
                "p90_us": percentile(every, 0.9),
                "p99_us": percentile(every, 0.99),
                "round_median_min_us": min(medians),
                "round_median_max_us": max(medians),
                "ratio_to_smallest": median / smallest,
            }
    return summary


def run_scale_store(
    targets: Sequence[ScaleTarget], rounds: int, calls: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(f"{seed}:measure")
    for target in targets:
        verify_sample(target, rng)
    sizes = [t.size for t in targets]
    per_round: dict[str, dict[int, list[list[float]]]] = {
        mode: {size: [] for size in sizes} for mode in SCALE_MODES
    }
    # Warm-up: caches and connections, untimed.
    for mode in SCALE_MODES:
        time_interleaved(targets, mode, min(200, calls), rng, 0, _not_due)
    for round_index in range(rounds):
        for mode in rotated(SCALE_MODES, round_index):
            for size, values in time_interleaved(
                targets, mode, calls, rng, round_index, _not_due
            ).items():
                per_round[mode][size].append(values)
    return {
        "sizes": sizes,
        "stores": {str(t.size): {"load_seconds": t.load_seconds, **t.details} for t in targets},
        "summary": summarize_scale(per_round, sizes),
    }


def measure_clear_expired(target: ScaleTarget, path: Path, count: int, seed: int) -> dict[str, Any]:
    """``count`` expired sessions added to the largest SQLite file, then one ``clear_expired``
    with the default batch size; every live session must still be there afterwards."""
    now = time.time()
    sqlite_bulk_insert(path, expired_sessions(f"{target.tag}-expired", count, now, seed))
    if sqlite_count(path) != target.size + count:
        raise BenchmarkError(f"{path.name}: the expired sessions did not all arrive")
    started = time.perf_counter()
    removed = target.store.clear_expired(time.time(), batch_size=CLEAR_BATCH_SIZE)
    seconds = time.perf_counter() - started
    left = sqlite_count(path)
    if removed != count or left != target.size:
        raise BenchmarkError(
            f"clear_expired removed {removed} of {count} expired sessions, {left} rows left"
            f" of {target.size} live ones"
        )
    batches = count // CLEAR_BATCH_SIZE + 1
    _progress(f"sqlite: clear_expired removed {removed:,} in {seconds:.2f} s")
    return {
        "live_sessions": target.size,
        "expired_sessions": count,
        "batch_size": CLEAR_BATCH_SIZE,
        "statements": batches,
        "seconds": seconds,
        "rows_per_second": removed / seconds,
        "ms_per_batch": seconds / batches * 1e3,
        "live_sessions_after": left,
    }


def run_scale(
    args: argparse.Namespace, tmp: Path, redis_port: int | None, skipped: dict[str, str]
) -> dict[str, Any]:
    sizes = QUICK_SCALE_SIZES if args.quick else SCALE_SIZES
    expired = 1_000 if args.quick else EXPIRED_SESSIONS
    now = time.time()
    result: dict[str, Any] = {}
    targets = [build_sqlite_target(size, tmp, now, args.seed) for size in sizes]
    try:
        result["sqlite"] = run_scale_store(targets, args.rounds, args.calls, args.seed)
        path = tmp / f"scale-{sizes[-1]}.sqlite3"
        result["sqlite"]["clear_expired"] = measure_clear_expired(
            targets[-1], path, expired, args.seed
        )
    finally:
        for target in targets:
            target.store.close()
    if redis_port is None:
        skipped["scale:redis"] = skipped.get("redis", "no redis-server")
        return result
    targets = [
        build_redis_target(size, redis_port, db, now, args.seed) for db, size in enumerate(sizes, 1)
    ]
    try:
        result["redis"] = run_scale_store(targets, args.rounds, args.calls, args.seed)
    finally:
        for target in targets:
            target.store.close()
    return result


# -- the size part -------------------------------------------------------------------------------


def blob_of(size: int, seed: int, which: int) -> str:
    """``size`` characters of random URL-safe text (it barely compresses)."""
    rng = random.Random(f"{seed}:blob:{size}:{which}")
    raw = base64.urlsafe_b64encode(rng.randbytes(size * 3 // 4 + 3)).decode("ascii")
    return raw[:size]


@dataclass
class SizeTarget:
    variant: str
    size: int
    app: Flask
    client: FlaskClient
    close: Callable[[], None]
    batch: dict[str, int] = field(default_factory=dict)


def build_size_app(variant: str, size: int, tmp: Path, redis_port: int | None, seed: int) -> Flask:
    store: str | None = None
    if variant == "ours-sqlite":
        store = f"sqlite:///{tmp / f'size-{size}.sqlite3'}"
    elif variant == "ours-redis":
        store = f"redis://{HOST}:{redis_port}/0?prefix={SIZE_REDIS_PREFIX}{size}:"

    def configure(app: Flask) -> None:
        if store is not None:
            ServerSession(app, store=store, cleanup_interval=0)

    app = create_app(configure)
    blobs = itertools.cycle([blob_of(size, seed, 0), blob_of(size, seed, 1)])
    first = next(blobs)

    def login_sized() -> str:
        session["user"] = USER
        session["cart"] = list(CART)
        session["blob"] = first
        return "ok"

    def put() -> str:
        session["blob"] = next(blobs)
        return "ok"

    app.add_url_rule("/login-sized", view_func=login_sized)
    app.add_url_rule("/put", view_func=put)
    return app


def cookie_bytes(client: FlaskClient) -> int:
    cookie = client.get_cookie("session")
    return 0 if cookie is None else len("session=") + len(cookie.value)


def _nothing() -> None:
    pass


def build_size_target(
    variant: str, size: int, tmp: Path, redis_port: int | None, seed: int
) -> SizeTarget | str:
    """The app with a logged-in client whose session holds ``size`` characters, or why the
    combination is not possible."""
    app = build_size_app(variant, size, tmp, redis_port, seed)
    client = app.test_client()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Werkzeug's "cookie too large"
        if request_text(client, "/login-sized") != "ok":
            raise BenchmarkError(f"{variant} {size}: login failed")
    close: Callable[[], None] = _nothing
    if variant != BASELINE:
        close = ServerSession.store_of(app).close
    elif (length := cookie_bytes(client)) > COOKIE_LIMIT:
        return f"the cookie would be {length:,} bytes, over the {COOKIE_LIMIT:,}-byte limit"
    target = SizeTarget(variant, size, app, client, close)
    check_size_target(target)
    return target


def check_size_target(target: SizeTarget) -> None:
    """The session really holds the value and every endpoint works, before any timing."""
    client = target.client
    if request_text(client, "/get") != USER:
        raise BenchmarkError(f"{target.variant} {target.size}: /get lost the user")
    written = request_text(client, "/set")
    if request_text(client, "/n") != written:
        raise BenchmarkError(f"{target.variant} {target.size}: /set did not persist")
    request_text(client, "/put")
    if target.variant != BASELINE:
        store = ServerSession.store_of(target.app)
        cookie = client.get_cookie("session")
        assert cookie is not None
        session_id, _ = CookieSigner([SECRET_KEY]).unsign(cookie.value)
        assert session_id is not None
        record = store.load(store_key(session_id))
        stored = 0 if record is None else len(json.loads(record.values.get("blob", '""')))
        if stored != target.size:
            raise BenchmarkError(f"{target.variant}: stored a value of {stored}, not {target.size}")


def run_size(
    args: argparse.Namespace, tmp: Path, redis_port: int | None, skipped: dict[str, str]
) -> dict[str, Any]:
    sizes = SESSION_SIZES[:3] if args.quick else SESSION_SIZES
    targets: list[SizeTarget] = []
    not_possible: dict[str, dict[str, str]] = {v: {} for v in SIZE_VARIANTS}
    raw: dict[str, dict[str, dict[str, list[float]]]] = {
        v: {str(s): {e: [] for e in SIZE_ENDPOINTS} for s in sizes} for v in SIZE_VARIANTS
    }
    try:
        for variant in SIZE_VARIANTS:
            if variant == "ours-redis" and redis_port is None:
                skipped["size:ours-redis"] = skipped.get("redis", "no redis-server")
                continue
            for size in sizes:
                built = build_size_target(variant, size, tmp, redis_port, args.seed)
                if isinstance(built, str):
                    not_possible[variant][str(size)] = built
                    continue
                targets.append(built)
                calibrate_endpoints(
                    built.client, SIZE_ENDPOINTS, built.batch, args.seconds, args.warmup
                )
        for round_index in range(args.rounds):
            for target in rotated(targets, round_index):
                for endpoint in rotated(SIZE_ENDPOINTS, round_index):
                    count = target.batch[endpoint]
                    elapsed = time_requests(target.client, "/" + endpoint, count)
                    raw[target.variant][str(target.size)][endpoint].append(elapsed / count * 1e6)
            _progress(f"size: round {round_index + 1} of {args.rounds}")
    finally:
        for target in targets:
            target.close()
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for variant, by_size in raw.items():
        summary[variant] = {}
        for size_text, by_endpoint in by_size.items():
            summary[variant][size_text] = {
                endpoint: (
                    {
                        "median_us": statistics.median(values),
                        "min_us": min(values),
                        "max_us": max(values),
                    }
                    if values
                    else None
                )
                for endpoint, values in by_endpoint.items()
            }
    return {
        "sizes": list(sizes),
        "endpoints": list(SIZE_ENDPOINTS),
        "requests_per_measurement": {f"{t.variant}:{t.size}": dict(t.batch) for t in targets},
        "not_possible": not_possible,
        "raw_us_per_request": raw,
        "summary": summary,
    }


# -- report --------------------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _bytes(size: int) -> str:
    for unit, factor in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def render_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    machine = report["machine"]
    lines = [
        f"# Scaling and session size, SQLite and Redis ({report['date']})",
        "",
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, SQLite {machine['sqlite']},"
        f" redis-server {machine.get('redis_server') or 'n/a'}; load average"
        f" {report['load_average_before']} before, {report['load_average_after']} after;"
        f" {report['duration_seconds']:.0f} s in all.",
    ]
    for reason_key, reason in report["skipped"].items():
        lines += ["", f"**Skipped** {reason_key}: {reason}"]
    scale = report.get("scale")
    if scale:
        lines += [
            "",
            "## Scale",
            "",
            f"Stores holding {', '.join(f'{s:,}' for s in settings['scale_sizes'])} live"
            " sessions (SQLite: one file each, bulk-loaded with one `executemany` in one"
            " transaction; Redis: one database each, pipelined HSET + PEXPIRE in batches of"
            f" {REDIS_BATCH:,}). {settings['rounds']} rounds; in each, per kind of call,"
            f" {settings['calls']:,} calls per store, the stores interleaved call by call, each"
            " call on a session drawn at random and timed on its own. Median, p90, p99 over all"
            " calls; *round medians* the range of the per-round medians; *vs smallest* the"
            " median over that of the smallest store.",
            "",
            *(f"- **{mode}**: {text}" for mode, text in SCALE_MODE_TEXT.items()),
            "",
            "| store | mode | sessions | median µs | p90 µs | p99 µs | round medians µs"
            " | vs smallest |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, part in scale.items():
            for mode in SCALE_MODES:
                for size in part["sizes"]:
                    e = part["summary"][str(size)][mode]
                    lines.append(
                        f"| {kind} | {mode} | {size:,} | {_us(e['median_us'])}"
                        f" | {_us(e['p90_us'])} | {_us(e['p99_us'])}"
                        f" | {_us(e['round_median_min_us'])}-{_us(e['round_median_max_us'])}"
                        f" | {e['ratio_to_smallest']:.2f}x |"
                    )
        lines += [
            "",
            "| store | sessions | bulk load s | sessions/s | size |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, part in scale.items():
            for size in part["sizes"]:
                d = part["stores"][str(size)]
                if kind == "sqlite":
                    footprint = f"{d['file_bytes'] / 2**20:.1f} MiB file"
                else:
                    footprint = (
                        f"{d['used_memory_added_bytes'] / 2**20:.1f} MiB memory"
                        f" ({d['bytes_per_session']} B/session)"
                    )
                lines.append(
                    f"| {kind} | {size:,} | {d['load_seconds']:.1f} | {d['rows_per_second']:,}"
                    f" | {footprint} |"
                )
        clear = scale.get("sqlite", {}).get("clear_expired")
        if clear:
            lines += [
                "",
                f"SQLite `clear_expired` of {clear['expired_sessions']:,} expired sessions"
                f" added to the {clear['live_sessions']:,}-session file, batch size"
                f" {clear['batch_size']:,}: **{clear['seconds']:.2f} s**"
                f" ({clear['rows_per_second']:,.0f} rows/s, {clear['statements']} batches,"
                f" {clear['ms_per_batch']:.1f} ms each); {clear['live_sessions_after']:,} live"
                " sessions left, as before. Redis removes expired keys itself.",
            ]
    size_part = report.get("size")
    if size_part:
        lines += [
            "",
            "## Session size",
            "",
            "A logged-in session (user, cart) that also holds one value of random text of the"
            " given size; µs per request through the test client, median of"
            f" {settings['rounds']} rounds (range in brackets), the variants and sizes"
            f" interleaved. A cookie session over {COOKIE_LIMIT:,} bytes is not possible: n/a.",
            "",
            *(f"- **/{e}**: {text}" for e, text in SIZE_ENDPOINT_TEXT.items()),
            "",
            "| variant | endpoint | " + " | ".join(_bytes(s) for s in size_part["sizes"]) + " |",
            "|---|---|" + "---:|" * len(size_part["sizes"]),
        ]
        for variant in SIZE_VARIANTS:
            if variant not in size_part["summary"] or (
                all(
                    e is None
                    for by_e in size_part["summary"][variant].values()
                    for e in by_e.values()
                )
            ):
                continue
            for endpoint in SIZE_ENDPOINTS:
                cells = []
                for size in size_part["sizes"]:
                    e = size_part["summary"][variant][str(size)][endpoint]
                    cells.append(
                        "n/a"
                        if e is None
                        else f"{_us(e['median_us'])} ({_us(e['min_us'])}-{_us(e['max_us'])})"
                    )
                lines.append(f"| {variant} | /{endpoint} | " + " | ".join(cells) + " |")
        for variant, reasons in size_part["not_possible"].items():
            for size_text, reason in reasons.items():
                lines.append("")
                lines.append(f"n/a: {variant} at {_bytes(int(size_text))}: {reason}.")
    lines += reproduce_lines(report["command"], "python benchmarks/scale_bench.py")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def machine_info(redis_server: str | None) -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": redis_server,
        "packages": package_versions(PACKAGES),
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per store and round")
    parser.add_argument("--seconds", type=float, default=0.15, help="size part: seconds per batch")
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round, no files")
    args = parser.parse_args(argv)
    args.parts = PARTS if args.only is None else tuple(args.only.split(","))
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    if args.quick:
        args.rounds, args.calls, args.seconds, args.warmup = 1, 100, 0.02, 0.01
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    load_before = load_average()
    skipped: dict[str, str] = {}
    report: dict[str, Any] = {
        "benchmark": "scale",
        "date": started_at.date().isoformat(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": "python benchmarks/scale_bench.py" + "".join(" " + shlex.quote(a) for a in argv),
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-bench-")))
        redis_port: int | None = None
        redis_version: str | None = None
        try:
            server: ServerProcess = stack.enter_context(stopped_at_exit(redis_process(tmp)))
            redis_port = server.port
            import redis

            with redis.Redis(host=HOST, port=redis_port) as admin:
                redis_version = str(admin.info("server")["redis_version"])
        except Unavailable as exc:
            skipped["redis"] = str(exc)
        report["machine"] = machine_info(redis_version)
        report["settings"] = {
            "parts": list(args.parts),
            "rounds": args.rounds,
            "calls": args.calls,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "seed": args.seed,
            "quick": args.quick,
            "scale_sizes": list(QUICK_SCALE_SIZES if args.quick else SCALE_SIZES),
            "session_sizes": list(SESSION_SIZES[:3] if args.quick else SESSION_SIZES),
            "touch_interval": TOUCH_INTERVAL,
            "redis_batch": REDIS_BATCH,
            "cookie_limit": COOKIE_LIMIT,
        }
        if "scale" in args.parts:
            report["scale"] = run_scale(args, tmp, redis_port, skipped)
        if "size" in args.parts:
            report["size"] = run_size(args, tmp, redis_port, skipped)
    report["skipped"] = skipped
    report["load_average_before"] = load_before
    report["load_average_after"] = load_average()
    report["duration_seconds"] = round(time.perf_counter() - started, 1)
    markdown = render_markdown(report)
    print(markdown)
    if not args.quick:
        stem = f"{report['date']}-scale"
        if args.only is not None:
            stem += "-only-" + "-".join(args.parts)
        write_results(stem, report, markdown)
    return 0


if __name__ == "__main__":
    run_main(main, "scale benchmark failed")
