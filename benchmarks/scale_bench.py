"""Scaling on every store, and the cost of the session's size, through Flask's test client.

- ``scale``: read latency (``store.load``, ``GET /get``) with 1,000, 100,000 and 1,000,000 live
  sessions bulk-loaded in each store's own format (SQLite, Redis, PostgreSQL, MariaDB:
  scale_stores.py), the sizes interleaved call by call; then ``clear_expired`` of 100,000
  expired sessions in the largest store of each kind that needs it (Redis expires its keys).
- ``size``: µs per request of ``/get``, ``/set`` and ``/put`` with a session holding 100 B to
  1 MB, on ``cookie`` (while its cookie fits the browsers' 4 KB), ``ours-memory``, ``ours-sqlite``,
  ``ours-redis``.

The servers are the tests' (redis-server, PostgreSQL, MariaDB on 127.0.0.1, free ports, stopped by
PID); a missing one is skipped with the reason.

    python benchmarks/scale_bench.py             # the full run, about 6 minutes
    python benchmarks/scale_bench.py --quick     # smoke check: small sizes, no files written
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis_counts
from flask import Flask, session
from harness import (
    BASELINE,
    CART,
    HOST,
    USER,
    BenchmarkError,
    Built,
    Running,
    Servers,
    Variant,
    create_app,
    goal_result,
    redis_server,
    run_rounds,
    session_key,
    start,
)
from report import (
    Cell,
    Record,
    Section,
    arguments,
    finish,
    goal_lines,
    machine_info,
    render,
    run_main,
)
from scale_stores import (
    REDIS_BATCH,
    check_row_format,
    log_position,
    pg_scans,
    redis_target,
    sql_target,
    sqlite_target,
)
from scaling import (
    EXPIRED_SESSIONS,
    IDLE_TIMEOUT,
    SCALE_COLUMNS,
    SCALE_TOUCH_INTERVAL,
    TESTCLIENT_GET,
    ScaleTarget,
    clear_expired_note,
    expired_sessions,
    measure_clear_expired,
    not_due,
    prepare_calls,
    scale_rows,
    summarize_scale,
    time_interleaved,
    time_modes,
    us,
)
from sql_server import MARIADB, MARIADB_SETTINGS, PG, PG_SETTINGS, SQLServer, start_sql_servers

from flask_serversession import ServerSession
from flask_serversession.stores import Touch

SCALE_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SCALE_SIZES = (100, 1_000, 10_000)
STORES = ("sqlite", "redis", PG, MARIADB)
#: The kinds of call timed per store: a due touch only on the SQL stores, where it writes a row.
MODES = {
    "sqlite": ("load", TESTCLIENT_GET),
    "redis": ("load", TESTCLIENT_GET),
    PG: ("load", "load-touch-due", TESTCLIENT_GET),
    MARIADB: ("load", "load-touch-due", TESTCLIENT_GET),
}
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "load-touch-due": "store.load(key, touch), touch due (a read that refreshes the expiry)",
    TESTCLIENT_GET: "GET /get through the test client (cookie of that session)",
}
#: The share of logouts' tombstones among the expired sessions ``clear_expired`` removes, per
#: store; Redis expires its keys itself.
TOMBSTONES = {"sqlite": 0.0, PG: 0.1, MARIADB: 0.1}
#: On the SQL stores, load latency with the largest table may be at most this many times that
#: with the smallest.
SCALE_GOAL = 1.2
SESSION_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
SIZE_VARIANTS = (BASELINE, "ours-memory", "ours-sqlite", "ours-redis")
SIZE_ENDPOINTS = ("get", "set", "put")
SIZE_ENDPOINT_TEXT = {
    "get": "`session.get('user')`: the session is loaded, big value included",
    "set": "`session['n'] = <new number>`: a small write (ours: a patch, without loading)",
    "put": "`session['blob'] = <another value of the same size>`: the big value rewritten",
}
#: Werkzeug's max_cookie_size: browsers ignore bigger cookies, Werkzeug warns.
COOKIE_LIMIT = 4093
PACKAGES = ("flask", "werkzeug", "flask-serversession", "redis", "sqlalchemy", "psycopg", "pymysql")


# -- the scale part ------------------------------------------------------------------------------

#: A store of one size, not loaded yet: (size, its number among the sizes, servers) -> target.
BUILDERS: dict[str, Callable[[int, int, Servers], ScaleTarget]] = {
    "sqlite": lambda size, n, servers: sqlite_target(size, servers.tmp),
    "redis": lambda size, n, servers: redis_target(size, servers.require("redis"), n),
    PG: lambda size, n, servers: sql_target(servers.require(PG), size, servers.tmp),
    MARIADB: lambda size, n, servers: sql_target(servers.require(MARIADB), size, servers.tmp),
}


def _touch(mode: str, now: float) -> Touch:
    if mode == "load-touch-due":
        return Touch(now, now + IDLE_TIMEOUT, now + 1.0)  # every live session is due
    return not_due(now)


def _warm(targets: Sequence[ScaleTarget], modes: Sequence[str], calls: int, rng: Any) -> None:
    for mode in modes:  # caches filled, connections made, statements prepared: untimed
        time_interleaved(targets, mode, calls, rng, 0, functools.partial(_touch, mode))


def _log_bytes(
    server: SQLServer, target: ScaleTarget, mode: str, calls: int, rng: random.Random
) -> float:
    """Write-ahead log bytes the server wrote per call, in a pass of its own (not timed)."""
    indices = [rng.randrange(target.size) for _ in range(calls)]
    prepared, check = prepare_calls(target, mode, indices, functools.partial(_touch, mode))
    before = log_position(server)
    answers = [call() for call in prepared]
    written = log_position(server) - before
    check(answers)
    return written / calls


def measure_store(
    kind: str, targets: list[ScaleTarget], args: Any, server: SQLServer | None
) -> dict[str, Any]:
    """The timed rounds; on an SQL server also the log bytes per call and (PostgreSQL) the
    scans the rounds caused: a sequential scan of a sessions table would be the scaling
    failure itself."""
    rng = random.Random(f"{args.seed}:{kind}:measure")
    modes, sizes = MODES[kind], [t.size for t in targets]
    _warm(targets, modes, min(200, args.calls), rng)
    if server is not None:  # the scan statistics from fresh connections, before and after
        for target in targets:
            target.store.close()
        before = pg_scans(server, sizes)
        _warm(targets, modes, 50, rng)
    per_round, order = time_modes(targets, modes, args.rounds, args.calls, rng, _touch, kind)
    result: dict[str, Any] = {
        "sizes": sizes,
        "modes": list(modes),
        "order": order,
        "stores": {str(t.size): {"load_seconds": t.load_seconds, **t.details} for t in targets},
        "summary": summarize_scale(per_round, sizes),
    }
    if server is not None:
        calls = min(args.calls, 500)
        result["log_bytes_per_call"] = {
            str(t.size): {m: _log_bytes(server, t, m, calls, rng) for m in modes} for t in targets
        }
        for target in targets:
            target.store.close()
        after = pg_scans(server, sizes)
        for size in set(before) & set(after):
            result["stores"][str(size)]["seq_scans"] = after[size][0] - before[size][0]
            result["stores"][str(size)]["index_scans"] = after[size][1] - before[size][1]
    return result


def run_store(kind: str, sizes: Sequence[int], servers: Servers, args: Any) -> dict[str, Any]:
    """One kind of store: loaded in every size, measured, then ``clear_expired`` in the largest."""
    now = time.time()
    server = servers.started.get(kind) if kind in (PG, MARIADB) else None
    targets: list[ScaleTarget] = []
    try:
        for n, size in enumerate(sizes, 1):
            targets.append(BUILDERS[kind](size, n, servers))
            targets[-1].load(now, args.seed)
        result = measure_store(kind, targets, args, server)
        if kind in TOMBSTONES:
            largest = targets[-1]
            tag, count = f"{largest.tag}-expired", args.expired_sessions
            expired = expired_sessions(tag, count, time.time(), args.seed, TOMBSTONES[kind])
            add = functools.partial(largest.insert, expired)
            clear = measure_clear_expired(largest.store, largest.size, count, largest.count, add)
            result["clear_expired"] = clear
        return result
    finally:
        for target in targets:
            target.store.close()


def run_scale(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    sizes = args.scale_sizes
    result: dict[str, Any] = {}
    for kind in STORES:
        need = "redis" if kind == "redis" else kind
        if kind != "sqlite" and need not in servers.started:
            skipped[f"scale:{kind}"] = servers.missing.get(need, f"no {need} server")
            continue
        result[kind] = run_store(kind, sizes, servers, args)
    return result


def evaluate_scale_goals(scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for kind in (k for k in (PG, MARIADB) if k in scale):
        result = scale[kind]
        largest, smallest = max(result["sizes"]), min(result["sizes"])
        for mode in result["modes"]:
            entry = result["summary"][str(largest)][mode]
            text = f"{kind} {mode}: latency with {largest:,} sessions <= {SCALE_GOAL}x that with"
            goals.append(
                goal_result(
                    f"{text} {smallest:,}",
                    entry["ratio_to_smallest"],
                    SCALE_GOAL,
                    at_most=True,
                    round_ratios=entry["round_ratios"],
                )
            )
    return goals


# -- the size part -------------------------------------------------------------------------------


def blob_of(size: int, seed: int, which: int) -> str:
    """``size`` characters of random URL-safe text (it barely compresses)."""
    rng = random.Random(f"{seed}:blob:{size}:{which}")
    return base64.urlsafe_b64encode(rng.randbytes(size * 3 // 4 + 3)).decode("ascii")[:size]


def size_app(variant: str, size: int, servers: Servers, seed: int) -> Built:
    """The benchmark's app whose ``/login`` also stores ``size`` characters of random text in
    the session, and whose ``/put`` replaces them with as many others."""
    stores = {
        "ours-memory": "memory://",
        "ours-sqlite": f"sqlite:///{servers.tmp / f'size-{size}.sqlite3'}",
        "ours-redis": f"redis://{HOST}:{servers.started.get('redis')}/0?prefix=size:{size}:",
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

    app.view_functions["login"] = login_sized
    app.add_url_rule("/put", view_func=put)
    close = ServerSession.store_of(app).close if variant in stores else lambda: None
    return Built(app, close=close)


def start_size(variant: str, size: int, servers: Servers, seed: int) -> Running | str:
    """The app logged in and checked (harness.start), its session holding ``size`` characters;
    or why the combination is not possible."""
    build = functools.partial(size_app, variant, size, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Werkzeug's "cookie too large"
        running = start(Variant(f"{variant} {_bytes(size)}", "", build), servers, SIZE_ENDPOINTS)
    cookie = running.client.get_cookie("session")
    assert cookie is not None
    if variant == BASELINE:
        length = len("session=") + len(cookie.value)
        if length <= COOKIE_LIMIT:
            return running
        running.built.close()
        return f"the cookie would be {length:,} bytes, over the {COOKIE_LIMIT:,}-byte limit"
    record = ServerSession.store_of(running.built.app).load(session_key(running.client))
    stored = 0 if record is None else len(json.loads(record.values.get("blob", '""')))
    if stored != size:
        running.built.close()
        raise BenchmarkError(f"{running.name}: stored a value of {stored}, not {size}")
    return running


def _median_range(rates: list[float]) -> dict[str, float] | None:
    us = [1e6 / rate for rate in rates]
    return {"median_us": statistics.median(us), "min_us": min(us), "max_us": max(us)}


def run_size(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    """µs per request of each endpoint, per variant and session size, in interleaved rounds."""
    sizes = args.session_sizes
    not_possible: dict[str, dict[str, str]] = {v: {} for v in SIZE_VARIANTS}
    runnings: dict[tuple[str, int], Running] = {}
    with ExitStack() as stack:
        for variant, size in itertools.product(SIZE_VARIANTS, sizes):
            if variant == "ours-redis" and "redis" not in servers.started:
                skipped["size:ours-redis"] = servers.missing.get("redis", "no redis-server")
                continue
            running = start_size(variant, size, servers, args.seed)
            if isinstance(running, str):
                not_possible[variant][str(size)] = running
                continue
            stack.callback(running.built.close)
            running.calibrate(args.seconds, args.warmup)
            runnings[variant, size] = running
        run_rounds(list(runnings.values()), args.rounds, "size: ")
    return {
        "sizes": list(sizes),
        "endpoints": list(SIZE_ENDPOINTS),
        "requests_per_measurement": {r.name: r.batch for r in runnings.values()},
        "not_possible": not_possible,
        "raw_requests_per_second": {r.name: r.rates for r in runnings.values()},
        "summary": {
            v: {
                str(s): {
                    e: _median_range(runnings[v, s].rates[e]) if (v, s) in runnings else None
                    for e in SIZE_ENDPOINTS
                }
                for s in sizes
            }
            for v in SIZE_VARIANTS
        },
    }


# -- report --------------------------------------------------------------------------------------


def _bytes(size: int) -> str:
    for unit, factor in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.1f} MiB"


def _footprint(d: dict[str, Any]) -> str:
    if "file_bytes" in d:
        return f"{_mib(d['file_bytes'])} file"
    if "used_memory_added_bytes" in d:
        return f"{_mib(d['used_memory_added_bytes'])} memory ({d['bytes_per_session']} B/session)"
    return f"table {_mib(d['table_bytes'])}, indexes {_mib(d['index_bytes'])}"


def _scans(d: dict[str, Any]) -> str:
    return f"{d['seq_scans']} / {d['index_scans']:,}" if "seq_scans" in d else "n/a"


LOAD_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("store", "{store}"),
    ("sessions", "{size:,}"),
    ("bulk load s", "{load_seconds:.1f}"),
    ("sessions/s", "{rows_per_second:,}"),
    ("size", _footprint),
    ("seq scans / index scans while measured", _scans),
)
LATENCY_COLUMNS = (
    *SCALE_COLUMNS,
    ("log bytes per call", lambda e: "n/a" if e["log"] is None else f"{e['log']:,.0f}"),
)


def scale_sections(scale: dict[str, Any], settings: dict[str, Any]) -> list[Section]:
    text = (
        f"Stores holding {', '.join(f'{s:,}' for s in settings['scale_sizes'])} live sessions"
        " in the store's own format (SQLite: one file each, one `executemany` in one"
        f" transaction; Redis: one database each, pipelined HSET + PEXPIRE in batches of"
        f" {REDIS_BATCH:,}; PostgreSQL: COPY; MariaDB: LOAD DATA; one table each), analyzed."
        f" {settings['rounds']} rounds; in each, per kind of call, {settings['calls']:,} calls"
        " per store, the stores interleaved call by call (their order rotated at every step),"
        " each call on a session drawn at random from its whole store and timed on its own."
        " Median, p90, p99 over all calls; *round medians* the range of the per-round medians;"
        " *vs smallest* the median over that of the smallest store, *per round* the same ratio"
        " round by round. *Log bytes per call*: the write-ahead log the SQL server wrote per"
        " call (PostgreSQL WAL, InnoDB redo), from a pass of its own after the timed rounds"
        " (server-wide, so background work such as autovacuum or InnoDB's purge shows as a few"
        " bytes): a read writes none, a due touch writes its row and index entries, plus, on"
        " PostgreSQL, a full image of each page it is the first to modify since the last"
        " checkpoint (`full_page_writes`). *Bulk load s* includes generating and analyzing."
    )
    rows = [row for kind, part in scale.items() for row in scale_rows(kind, part, part["modes"])]
    loads = [
        {**part["stores"][str(size)], "store": kind, "size": size}
        for kind, part in scale.items()
        for size in part["sizes"]
    ]
    notes = [
        f"- {kind}: "
        + clear_expired_note(part["clear_expired"], f" ({TOMBSTONES[kind]:.0%} of them tombstones)")
        for kind, part in scale.items()
        if "clear_expired" in part
    ]
    notes += ["- redis removes expired keys itself."] if "redis" in scale else []
    modes = [f"- **{mode}**: {text}" for mode, text in SCALE_MODE_TEXT.items()]
    return [
        Section("Scale", [text], notes=modes),
        Section(None, (), LATENCY_COLUMNS, "llrrrrrrrr", rows),
        Section(None, (), LOAD_COLUMNS, "lrrrlr", loads, notes),
    ]


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
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, SQLite {machine['sqlite']}, "
        + ", ".join(f"{kind} {version}" for kind, version in machine["servers"].items())
        + f" (started by the run on 127.0.0.1); load average"
        f" {report['load_average_before']} before, {report['load_average_after']} after;"
        f" {report['duration_seconds']:.0f} s in all.",
        *(f"\n**Skipped** {key}: {reason}" for key, reason in report["skipped"].items()),
    ]
    sections = scale_sections(report["scale"], settings) if report["scale"] else []
    sections.append(Section("Goals", notes=goal_lines(report["goals"])))
    sections.append(size_section(report["size"], settings))
    title = f"Scaling and session size ({report['date']})"
    return render(title, intro, sections, report["command"])


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=5, seconds=0.15, warmup=0.1)
    args = parser.parse_args(argv)
    args.calls, args.seed, args.expired_sessions = 1000, 20261125, EXPIRED_SESSIONS
    args.scale_sizes, args.session_sizes = list(SCALE_SIZES), list(SESSION_SIZES)
    if args.quick:
        args.rounds, args.calls, args.seconds, args.warmup = 1, 100, 0.02, 0.01
        args.expired_sessions, args.scale_sizes = 1000, list(QUICK_SCALE_SIZES)
        args.session_sizes = args.session_sizes[:3]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    check_row_format()
    record = Record("scale", argv)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        servers.start("redis", lambda: redis_server(servers.tmp / "redis"))
        start_sql_servers(servers, (PG, MARIADB))
        scale = run_scale(args, servers, skipped)
        size = run_size(args, servers, skipped)
        versions = {k: s.describe() for k, s in servers.started.items() if k in (PG, MARIADB)}
        if "redis" in servers.started:
            versions["redis"] = redis_counts.redis_version(servers.started["redis"])
    report = record.report(
        machine=machine_info(
            PACKAGES,
            servers=versions,
            postgresql_arguments=PG_SETTINGS,
            mariadb_arguments=list(MARIADB_SETTINGS),
        ),
        settings={
            **vars(args),
            "touch_interval": SCALE_TOUCH_INTERVAL,
            "redis_batch": REDIS_BATCH,
            "cookie_limit": COOKIE_LIMIT,
        },
        scale=scale,
        size=size,
        goals=evaluate_scale_goals(scale),
        skipped=skipped,
    )
    return finish(report, render_markdown(report), args.quick)


if __name__ == "__main__":
    run_main(main, "scale benchmark failed")
