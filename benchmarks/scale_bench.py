"""Scaling on SQLite and Redis, and the cost of the session's size, through Flask's test client
(sql_bench.py does the scaling for PostgreSQL and MariaDB).

- ``scale``: read latency (``store.load``, ``GET /get``) with 1,000, 100,000 and 1,000,000 live
  sessions bulk-loaded in each store's own format, the sizes interleaved call by call; then
  ``clear_expired`` of 100,000 expired sessions in the largest SQLite file.
- ``size``: µs per request of ``/get``, ``/set`` and ``/put`` with a session holding 100 B to
  1 MB, on ``cookie`` (while its cookie fits the browsers' 4 KB), ``ours-sqlite``, ``ours-redis``.

    python benchmarks/scale_bench.py             # the full run, about 3 minutes
    python benchmarks/scale_bench.py --quick     # smoke check: small sizes, no files written
    python benchmarks/scale_bench.py --only size # one part; writes <date>-scale-only-size.*
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import random
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis_counts
from flask import Flask, session
from flask.testing import FlaskClient
from harness import (
    BASELINE,
    CART,
    HOST,
    SECRET_KEY,
    USER,
    BenchmarkError,
    Servers,
    calibrate_endpoints,
    create_app,
    progress,
    redis_server,
    request_text,
    rotated,
    time_requests,
)
from report import Cell, Record, Section, arguments, choose, finish, machine_info, render, run_main
from scaling import (
    EXPIRED_SESSIONS,
    IDLE_TIMEOUT,
    SCALE_COLUMNS,
    SCALE_TOUCH_INTERVAL,
    Stored,
    clear_expired_note,
    expired_sessions,
    live_sessions,
    measure_clear_expired,
    scale_rows,
    summarize_scale,
    time_interleaved,
    time_modes,
    us,
    verify_sample,
)

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.stores import Store, Touch

PARTS = ("scale", "size")
SCALE_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SCALE_SIZES = (100, 1_000, 10_000)
SCALE_MODES = ("load", "testclient-get")
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "testclient-get": "GET /get through the test client (cookie of that session)",
}
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
REDIS_PREFIX = "scale:"
SIZE_REDIS_PREFIX = "size:"
PACKAGES = ("flask", "werkzeug", "flask-serversession", "redis", "matplotlib")


# -- bulk loads ----------------------------------------------------------------------------------

SQLITE_INSERT = (
    "INSERT INTO serversession (key, data, created, last_seen, expires, absolute_expires,"
    " user_id, ended, info) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL)"
)


def sqlite_bulk_insert(path: Path, sessions: Iterable[Stored]) -> float:
    """The sessions (not bound to a user ID: no index) into the store's table in one
    transaction, sorted by key (the table is WITHOUT ROWID: rows in key order fill its pages in
    one pass). Seconds of the insert."""
    rows = sorted(
        (
            s.key,
            json.dumps(s.values),
            s.created,
            s.last_seen,
            s.expires,
            s.absolute_expires,
            s.ended,
        )
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


def redis_bulk_insert(client: Any, prefix: str, sessions: Iterable[Stored]) -> float:
    """The sessions as the store writes them (one hash each, TTL at the idle expiry), pipelined:
    HSET + PEXPIRE, ``REDIS_BATCH`` sessions per round trip. Seconds, generation included."""
    started = time.perf_counter()
    now_ms = round(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n, s in enumerate(sessions, 1):
        expires_ms = round(min(s.expires, s.absolute_expires) * 1000)
        times = (s.created, s.last_seen, s.expires, s.absolute_expires)
        mapping: dict[str, int | str] = {
            k: round(t * 1000) for k, t in zip("csea", times, strict=True)
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


def _scale_app(store: str) -> tuple[FlaskClient, Store]:
    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=store, touch_interval=SCALE_TOUCH_INTERVAL, cleanup_interval=0)

    app = create_app(configure)
    return app.test_client(use_cookies=False), ServerSession.store_of(app)


def build_sqlite_target(size: int, tmp: Path, now: float, seed: int) -> ScaleTarget:
    path = tmp / f"scale-{size}.sqlite3"
    client, store = _scale_app(f"sqlite:///{path}")  # creates the table and indexes
    tag = f"sqlite-{size}"
    seconds = sqlite_bulk_insert(path, live_sessions(tag, size, now, seed))
    if sqlite_count(path) != size:
        raise BenchmarkError(f"{path.name}: not all {size:,} sessions arrived")
    details = {"file_bytes": path.stat().st_size, "rows_per_second": round(size / seconds)}
    progress(f"sqlite: {size:,} sessions in {seconds:.1f} s")
    return ScaleTarget("sqlite", size, tag, store, client, seconds, details)


def build_redis_target(size: int, port: int, db: int, now: float, seed: int) -> ScaleTarget:
    import redis

    client, store = _scale_app(f"redis://{HOST}:{port}/{db}?prefix={REDIS_PREFIX}")
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
    progress(f"redis: {size:,} sessions in {seconds:.1f} s")
    return ScaleTarget("redis", size, tag, store, client, seconds, details)


def _not_due(mode: str, now: float) -> Touch:
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


def run_scale_store(targets: Sequence[ScaleTarget], args: Any) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}:measure")
    for target in targets:
        verify_sample(target, rng)
    # Warm-up: caches and connections, untimed.
    for mode in SCALE_MODES:
        time_interleaved(
            targets, mode, min(200, args.calls), rng, 0, functools.partial(_not_due, mode)
        )
    label = targets[0].kind
    per_round, _ = time_modes(targets, SCALE_MODES, args.rounds, args.calls, rng, _not_due, label)
    sizes = [t.size for t in targets]
    return {
        "sizes": sizes,
        "stores": {str(t.size): {"load_seconds": t.load_seconds, **t.details} for t in targets},
        "summary": summarize_scale(per_round, sizes),
    }


def _close_all(targets: Sequence[ScaleTarget]) -> None:
    for target in targets:
        target.store.close()


def run_scale(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    sizes = QUICK_SCALE_SIZES if args.quick else SCALE_SIZES
    expired = 1_000 if args.quick else EXPIRED_SESSIONS
    now = time.time()
    result: dict[str, Any] = {}
    with ExitStack() as stack:
        targets = [build_sqlite_target(size, servers.tmp, now, args.seed) for size in sizes]
        stack.callback(_close_all, targets)
        result["sqlite"] = run_scale_store(targets, args)
        path = servers.tmp / f"scale-{sizes[-1]}.sqlite3"
        sessions = expired_sessions(f"{targets[-1].tag}-expired", expired, now, args.seed, 0.0)

        def add_expired() -> None:
            sqlite_bulk_insert(path, sessions)

        result["sqlite"]["clear_expired"] = measure_clear_expired(
            targets[-1].store,
            sizes[-1],
            expired,
            functools.partial(sqlite_count, path),
            add_expired,
        )
    if "redis" not in servers.started:
        skipped["scale:redis"] = servers.missing.get("redis", "no redis-server")
        return result
    port = servers.started["redis"]
    with ExitStack() as stack:
        targets = [build_redis_target(s, port, db, now, args.seed) for db, s in enumerate(sizes, 1)]
        stack.callback(_close_all, targets)
        result["redis"] = run_scale_store(targets, args)
    return result


# -- the size part -------------------------------------------------------------------------------


def blob_of(size: int, seed: int, which: int) -> str:
    """``size`` characters of random URL-safe text (it barely compresses)."""
    rng = random.Random(f"{seed}:blob:{size}:{which}")
    return base64.urlsafe_b64encode(rng.randbytes(size * 3 // 4 + 3)).decode("ascii")[:size]


@dataclass
class SizeTarget:
    variant: str
    size: int
    app: Flask
    client: FlaskClient
    close: Callable[[], None]
    batch: dict[str, int] = field(default_factory=dict)


def build_size_app(variant: str, size: int, servers: Servers, seed: int) -> Flask:
    stores = {
        "ours-sqlite": f"sqlite:///{servers.tmp / f'size-{size}.sqlite3'}",
        "ours-redis": f"redis://{HOST}:{servers.started.get('redis')}/0?prefix={SIZE_REDIS_PREFIX}{size}:",
    }

    def configure(app: Flask) -> None:
        if variant in stores:
            ServerSession(app, store=stores[variant], cleanup_interval=0)

    app = create_app(configure)
    blobs = itertools.cycle([blob_of(size, seed, 0), blob_of(size, seed, 1)])
    first = next(blobs)

    def login_sized() -> str:
        session.update(user=USER, cart=list(CART), blob=first)
        return "ok"

    def put() -> str:
        session["blob"] = next(blobs)
        return "ok"

    app.add_url_rule("/login-sized", view_func=login_sized)
    app.add_url_rule("/put", view_func=put)
    return app


def build_size_target(variant: str, size: int, servers: Servers, seed: int) -> SizeTarget | str:
    """The app with a logged-in client whose session holds ``size`` characters, or why the
    combination is not possible."""
    app = build_size_app(variant, size, servers, seed)
    client = app.test_client()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Werkzeug's "cookie too large"
        if request_text(client, "/login-sized") != "ok":
            raise BenchmarkError(f"{variant} {size}: login failed")
    cookie = client.get_cookie("session")
    length = 0 if cookie is None else len("session=") + len(cookie.value)
    if variant == BASELINE and length > COOKIE_LIMIT:
        return f"the cookie would be {length:,} bytes, over the {COOKIE_LIMIT:,}-byte limit"
    close = ServerSession.store_of(app).close if variant != BASELINE else lambda: None
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
    if target.variant == BASELINE:
        return
    cookie = client.get_cookie("session")
    assert cookie is not None
    session_id, _ = CookieSigner([SECRET_KEY]).unsign(cookie.value)
    assert session_id is not None
    record = ServerSession.store_of(target.app).load(store_key(session_id))
    stored = 0 if record is None else len(json.loads(record.values.get("blob", '""')))
    if stored != target.size:
        raise BenchmarkError(f"{target.variant}: stored a value of {stored}, not {target.size}")


def _size_targets(
    args: Any, sizes: Sequence[int], servers: Servers, stack: ExitStack, skipped: dict[str, str]
) -> tuple[list[SizeTarget], dict[str, dict[str, str]]]:
    targets: list[SizeTarget] = []
    not_possible: dict[str, dict[str, str]] = {v: {} for v in SIZE_VARIANTS}
    for variant, size in itertools.product(SIZE_VARIANTS, sizes):
        if variant == "ours-redis" and "redis" not in servers.started:
            skipped["size:ours-redis"] = servers.missing.get("redis", "no redis-server")
            continue
        built = build_size_target(variant, size, servers, args.seed)
        if isinstance(built, str):
            not_possible[variant][str(size)] = built
            continue
        stack.callback(built.close)
        targets.append(built)
        calibrate_endpoints(built.client, SIZE_ENDPOINTS, built.batch, args.seconds, args.warmup)
    return targets, not_possible


def _median_range(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median_us": statistics.median(values), "min_us": min(values), "max_us": max(values)}


def run_size(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    sizes = SESSION_SIZES[:3] if args.quick else SESSION_SIZES
    raw: dict[str, dict[str, dict[str, list[float]]]] = {
        v: {str(s): {e: [] for e in SIZE_ENDPOINTS} for s in sizes} for v in SIZE_VARIANTS
    }
    with ExitStack() as stack:
        targets, not_possible = _size_targets(args, sizes, servers, stack, skipped)
        for round_index in range(args.rounds):
            for target in rotated(targets, round_index):
                for endpoint in rotated(SIZE_ENDPOINTS, round_index):
                    count = target.batch[endpoint]
                    elapsed = time_requests(target.client, "/" + endpoint, count)
                    raw[target.variant][str(target.size)][endpoint].append(elapsed / count * 1e6)
            progress(f"size: round {round_index + 1} of {args.rounds}")
    return {
        "sizes": list(sizes),
        "endpoints": list(SIZE_ENDPOINTS),
        "requests_per_measurement": {f"{t.variant}:{t.size}": dict(t.batch) for t in targets},
        "not_possible": not_possible,
        "raw_us_per_request": raw,
        "summary": {
            variant: {
                size: {e: _median_range(values) for e, values in by_endpoint.items()}
                for size, by_endpoint in by_size.items()
            }
            for variant, by_size in raw.items()
        },
    }


# -- report --------------------------------------------------------------------------------------


def _bytes(size: int) -> str:
    for unit, factor in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def _footprint(kind: str, d: dict[str, Any]) -> str:
    if kind == "sqlite":
        return f"{d['file_bytes'] / 2**20:.1f} MiB file"
    memory = d["used_memory_added_bytes"] / 2**20
    return f"{memory:.1f} MiB memory ({d['bytes_per_session']} B/session)"


def scale_sections(scale: dict[str, Any], settings: dict[str, Any]) -> list[Section]:
    text = (
        f"Stores holding {', '.join(f'{s:,}' for s in settings['scale_sizes'])} live sessions"
        " (SQLite: one file each, bulk-loaded with one `executemany` in one transaction; Redis:"
        f" one database each, pipelined HSET + PEXPIRE in batches of {REDIS_BATCH:,})."
        f" {settings['rounds']} rounds; in each, per kind of call, {settings['calls']:,} calls"
        " per store, the stores interleaved call by call, each call on a session drawn at random"
        " and timed on its own. Median, p90, p99 over all calls; *round medians* the range of"
        " the per-round medians; *vs smallest* the median over that of the smallest store, *per"
        " round* the same ratio round by round."
    )
    rows = [row for kind, part in scale.items() for row in scale_rows(kind, part, SCALE_MODES)]
    loads = [
        {**part["stores"][str(size)], "store": kind, "size": size}
        for kind, part in scale.items()
        for size in part["sizes"]
    ]
    clear = scale.get("sqlite", {}).get("clear_expired")
    notes = [clear_expired_note(clear, "") + " Redis removes expired keys itself."] if clear else []
    modes = [f"- **{mode}**: {text}" for mode, text in SCALE_MODE_TEXT.items()]
    return [
        Section("Scale", [text], notes=modes),
        Section(None, (), SCALE_COLUMNS, "llrrrrrrr", rows),
        Section(None, (), LOAD_COLUMNS, "lrrrr", loads, notes),
    ]


LOAD_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("store", "{store}"),
    ("sessions", "{size:,}"),
    ("bulk load s", "{load_seconds:.1f}"),
    ("sessions/s", "{rows_per_second:,}"),
    ("size", lambda d: _footprint(d["store"], d)),
)


def _size_cell(size: str, row: dict[str, Any]) -> str:
    e = row[size][row["endpoint"]]
    return "n/a" if e is None else f"{us(e['median_us'])} ({us(e['min_us'])}-{us(e['max_us'])})"


def size_section(part: dict[str, Any], settings: dict[str, Any]) -> Section:
    text = (
        "A logged-in session (user, cart) that also holds one value of random text of the"
        " given size; µs per request through the test client, median of"
        f" {settings['rounds']} rounds (range in brackets), the variants and sizes"
        f" interleaved. A cookie session over {COOKIE_LIMIT:,} bytes is not possible: n/a."
    )
    rows = [
        {"variant": variant, "endpoint": endpoint, **by_size}
        for variant, by_size in part["summary"].items()
        if any(e is not None for by_e in by_size.values() for e in by_e.values())
        for endpoint in SIZE_ENDPOINTS
    ]
    notes = [f"- **/{e}**: {text}" for e, text in SIZE_ENDPOINT_TEXT.items()]
    notes += [
        f"\nn/a: {variant} at {_bytes(int(size))}: {reason}."
        for variant, reasons in part["not_possible"].items()
        for size, reason in reasons.items()
    ]
    columns: list[tuple[str, Cell]] = [("variant", "{variant}"), ("endpoint", "/{endpoint}")]
    columns += [(_bytes(s), functools.partial(_size_cell, str(s))) for s in part["sizes"]]
    return Section("Session size", [text], columns, "ll" + "r" * len(part["sizes"]), rows, notes)


def render_markdown(report: dict[str, Any]) -> str:
    settings, machine = report["settings"], report["machine"]
    intro = [
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, SQLite {machine['sqlite']},"
        f" redis-server {machine.get('redis_server') or 'n/a'}; load average"
        f" {report['load_average_before']} before, {report['load_average_after']} after;"
        f" {report['duration_seconds']:.0f} s in all.",
        *(f"\n**Skipped** {key}: {reason}" for key, reason in report["skipped"].items()),
    ]
    sections = []
    if report.get("scale"):
        sections += scale_sections(report["scale"], settings)
    if report.get("size"):
        sections.append(size_section(report["size"], settings))
    title = f"Scaling and session size, SQLite and Redis ({report['date']})"
    return render(title, intro, sections, report["command"])


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=5, seconds=0.15, warmup=0.1)
    parser.add_argument("--only", help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per store and round")
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)
    args.parts = choose(parser, args.only, PARTS)
    if args.quick:
        args.rounds, args.calls, args.seconds, args.warmup = 1, 100, 0.02, 0.01
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    record = Record("scale", argv)
    skipped: dict[str, str] = {}
    parts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        servers.start("redis", lambda: redis_server(servers.tmp / "redis"))
        if "redis" in servers.missing:
            skipped["redis"] = servers.missing["redis"]
        redis_version = None
        if "redis" in servers.started:
            redis_version = redis_counts.redis_version(servers.started["redis"])
        for name, run_part in (("scale", run_scale), ("size", run_size)):
            if name in args.parts:
                parts[name] = run_part(args, servers, skipped)
    report = record.report(
        machine=machine_info(PACKAGES, redis_server=redis_version),
        settings={
            "parts": list(args.parts),
            "rounds": args.rounds,
            "calls": args.calls,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "seed": args.seed,
            "quick": args.quick,
            "scale_sizes": list(QUICK_SCALE_SIZES if args.quick else SCALE_SIZES),
            "session_sizes": list(SESSION_SIZES[:3] if args.quick else SESSION_SIZES),
            "touch_interval": SCALE_TOUCH_INTERVAL,
            "redis_batch": REDIS_BATCH,
            "cookie_limit": COOKIE_LIMIT,
        },
        **parts,
        skipped=skipped,
    )
    suffix = "-only-" + "-".join(args.parts) if args.only else ""
    return finish(report, render_markdown(report), args.quick, suffix)


if __name__ == "__main__":
    run_main(main, "scale benchmark failed")
