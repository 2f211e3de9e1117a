"""Requests per second through Flask's test client: Flask's cookie session, Flask-ServerSession
(memory, SQLite, Redis and Memcached stores) and Flask-Session 0.8 (SQLAlchemy on SQLite, and
Redis), in one process. The Redis variants share one redis-server that the run starts, and stops,
itself.

Every variant serves the same app; variants are interleaved round by round and each result is
reported as a ratio to the cookie session measured in the same run, so that a noisy, shared
machine moves all numbers together instead of skewing one comparison. For the Redis variants the
run also counts the commands each kind of request sends (``INFO commandstats`` and ``MONITOR``)
and measures the memory one stored session takes (``MEMORY USAGE``). See benchmarks/README.md.

    python benchmarks/run.py                      # the full run (what `make bench` does)
    python benchmarks/run.py --quick              # smoke check: 1 round, tiny batches, no files
    python benchmarks/run.py --rounds 5 --seconds 0.4 --only ours-sqlite,cookie
    python benchmarks/run.py --profile ours-redis:get    # cProfile one variant and endpoint
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from flask import Flask
from harness import (
    BASELINE,
    HOST,
    Built,
    Goal,
    Probe,
    Servers,
    Timed,
    Variant,
    compare_to_peers,
    create_app,
    evaluate_goals,
    goal_status,
    import_or_fail,
    memcached_server,
    profile_requests,
    redis_server,
    run_rounds,
    runnable,
    start,
    started,
    summarize,
    why_missing,
)
from redis_counts import (
    SAMPLE,
    count_round_trips,
    measure_memory,
    memory_section,
    redis_admin,
    redis_version,
    round_trips_section,
)
from report import (
    Record,
    Section,
    arguments,
    choose,
    finish,
    goal_lines,
    machine_info,
    ratio,
    render,
    rows_of,
    run_main,
    skipped_section,
    spread,
)

ENDPOINTS = ("none", "get", "set")
#: Key prefixes of the two Redis variants: equally long, so that MEMORY USAGE (which counts the
#: key) compares the stored sessions, not the prefixes.
OURS_REDIS_PREFIX = "bench:our:"
FLASK_SESSION_REDIS_PREFIX = "bench:fls:"
RAW_GET_KEY = "bench:raw-get"
RAW_GET = "raw-redis-get"

PACKAGES = (
    "flask",
    "werkzeug",
    "itsdangerous",
    "flask-serversession",
    "flask-session",
    "flask-sqlalchemy",
    "sqlalchemy",
    "msgspec",
    "redis",
    "gunicorn",
)


# -- variants ------------------------------------------------------------------------------------


def _count_rows(path: Path, table: str) -> Callable[[], int]:
    def count() -> int:
        # closing(): sqlite3's own context manager only ends the transaction.
        with closing(sqlite3.connect(path)) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    return count


def _count_keys(port: int, prefix: str) -> Callable[[], int]:
    def count() -> int:
        with redis_admin(port) as admin:
            return sum(1 for _ in admin.scan_iter(match=prefix + "*", count=1000))

    return count


def _no_session_setup(app: Flask) -> None:
    """The cookie session: Flask's own, nothing to install."""


def _ours(store: str, **extra: Any) -> Built:
    from flask_serversession import ServerSession

    def configure(app: Flask) -> None:
        ServerSession(app, store=store)

    app = create_app(configure)
    return Built(app, close=ServerSession.store_of(app).close, **extra)


def _build_ours_sqlite(servers: Servers) -> Built:
    path = servers.tmp / "ours.sqlite3"
    # An absolute path gives the four slashes of an absolute SQLAlchemy-style URL.
    return _ours(f"sqlite:///{path}", stored_sessions=_count_rows(path, "serversession"))


def _build_ours_redis(servers: Servers) -> Built:
    port = servers.require("redis")
    return _ours(
        f"redis://{HOST}:{port}/0?prefix={OURS_REDIS_PREFIX}",
        stored_sessions=_count_keys(port, OURS_REDIS_PREFIX),
        redis_prefix=OURS_REDIS_PREFIX,
    )


def _build_ours_memcached(servers: Servers) -> Built:
    port = servers.require("memcached")
    return _ours(f"memcached://{HOST}:{port}?prefix={OURS_REDIS_PREFIX}")


def _build_flask_session_sqlalchemy(servers: Servers) -> Built:
    name = "flask-session-sqlalchemy"
    session = import_or_fail(name, "flask_session").Session
    db = import_or_fail(name, "flask_sqlalchemy").SQLAlchemy()
    path = servers.tmp / "flask_session.sqlite3"

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
            SESSION_TYPE="sqlalchemy",
            SESSION_SQLALCHEMY=db,
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        session(app)

    app = create_app(configure)

    def close() -> None:
        with app.app_context():
            db.engine.dispose()

    return Built(app, stored_sessions=_count_rows(path, "sessions"), close=close)


def _build_flask_session_redis(servers: Servers) -> Built:
    session = import_or_fail("flask-session-redis", "flask_session").Session
    import redis

    port = servers.require("redis")
    # Flask-Session's documented set-up: a redis.Redis it is given, otherwise its defaults.
    client = redis.Redis(host=HOST, port=port)

    def configure(app: Flask) -> None:
        app.config.update(
            SESSION_TYPE="redis",
            SESSION_REDIS=client,
            SESSION_KEY_PREFIX=FLASK_SESSION_REDIS_PREFIX,
        )
        session(app)

    return Built(
        create_app(configure),
        stored_sessions=_count_keys(port, FLASK_SESSION_REDIS_PREFIX),
        close=client.close,
        redis_prefix=FLASK_SESSION_REDIS_PREFIX,
    )


VARIANTS: tuple[Variant, ...] = (
    Variant(
        BASELINE,
        "Flask's default signed-cookie session",
        lambda s: Built(create_app(_no_session_setup)),
    ),
    Variant("ours-memory", 'Flask-ServerSession, store="memory://"', lambda s: _ours("memory://")),
    Variant("ours-sqlite", "Flask-ServerSession, SQLite file store", _build_ours_sqlite),
    Variant(
        "ours-redis",
        f'Flask-ServerSession, store="redis://{HOST}:PORT/0?prefix={OURS_REDIS_PREFIX}"',
        _build_ours_redis,
        ("redis",),
    ),
    Variant(
        "ours-memcached",
        f'Flask-ServerSession, store="memcached://{HOST}:PORT"',
        _build_ours_memcached,
        ("memcached",),
    ),
    Variant(
        "flask-session-sqlalchemy",
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", Flask-SQLAlchemy on an SQLite file',
        _build_flask_session_sqlalchemy,
    ),
    Variant(
        "flask-session-redis",
        'Flask-Session 0.8, SESSION_TYPE="redis", SESSION_REDIS=redis.Redis(host, port)',
        _build_flask_session_redis,
        ("redis",),
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def wsgi_app_from_env() -> Flask:
    """The app of one variant, for a WSGI server (http_bench.py runs it under gunicorn).

    ``BENCH_VARIANT`` names the variant, ``BENCH_DIR`` is the directory for its files and
    ``BENCH_REDIS_PORT`` the port of the redis-server on 127.0.0.1, if it needs one.
    """
    variant = VARIANTS_BY_NAME[os.environ["BENCH_VARIANT"]]
    port = os.environ.get("BENCH_REDIS_PORT")
    servers = Servers(ExitStack(), Path(os.environ["BENCH_DIR"]))
    if port:
        servers.started["redis"] = int(port)
    # Never closed: the worker process ends with it.
    return variant.build(servers).app


GOALS = (
    Goal("ours-sqlite", "none", 0.95),
    Goal("ours-sqlite", "get", 0.8),
    Goal("ours-sqlite", "set", 0.5),
    Goal("ours-redis", "none", 0.95),
    Goal("ours-redis", "get", 0.6),
    Goal("ours-redis", "get", 1.3, against="flask-session-redis"),
    Goal("ours-redis", "set", 0.65),
)
#: Ours may take at most this many times the memory of Flask-Session's Redis session.
MEMORY_GOAL = 1.5
#: Flask-Session's stores against the cookie session, measured earlier on this machine.
REFERENCE: dict[str, dict[str, float]] = {
    "flask-session-sqlalchemy": {"get": 0.11, "set": 0.15},
    "flask-session-redis": {"none": 0.39, "get": 0.45, "set": 0.58},
}
#: Ours against the peer that does the same job.
PEERS = (("ours-sqlite", "flask-session-sqlalchemy"), ("ours-redis", "flask-session-redis"))
# -- the run -------------------------------------------------------------------------------------


def raw_get_probe(port: int) -> Probe:
    """One redis-py ``GET`` of a small value on the run's redis-server, timed like a variant:
    what a single round trip costs, to set against a cookie-session request."""
    import redis

    # redis-py's defaults, as Flask-Session's client; a value of a session's size.
    client = redis.Redis(host=HOST, port=port)
    client.set(RAW_GET_KEY, SAMPLE)
    return Probe(RAW_GET, lambda: client.get(RAW_GET_KEY) is not None, client.close)


def run(args: Any, servers: Servers, variants: Sequence[Variant]) -> dict[str, Any]:
    """The timed rounds, then (so that MONITOR never slows them down) the Redis counts."""
    results: dict[str, Any] = {"round_trips": {}, "memory": {}}
    with started(variants, servers, ENDPOINTS) as runnings, ExitStack() as stack:
        probes = []
        if "redis" in servers.started:
            probes.append(raw_get_probe(servers.started["redis"]))
            stack.callback(probes[0].close)
        timed: list[Timed] = [*runnings, *probes]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        results["order"] = run_rounds(timed, args.rounds)
        for running in runnings:
            running.verify()  # timing must not have broken anything either
        results["raw"] = {r.name: r.rates for r in runnings}
        results["batch"] = {r.name: r.batch for r in runnings}
        results["raw_get"] = [1e6 / us for probe in probes for us in probe.us]
        results["raw_get_batch"] = probes[0].batch if probes else None
        for running in runnings:
            if running.built.redis_prefix is not None:
                port = servers.require("redis")
                results["round_trips"][running.name] = count_round_trips(running, port)
                results["memory"][running.name] = measure_memory(running, port)
    return results


def summarize_raw_get(raw_get: list[float], raw: dict[str, Any]) -> dict[str, Any] | None:
    """One GET's cost in µs, and against the time of one cookie-session request per endpoint."""
    if not raw_get:
        return None
    us = [1e6 / rate for rate in raw_get]
    median = statistics.median(us)
    result: dict[str, Any] = {"median_us": median, "min_us": min(us), "max_us": max(us)}
    result["against_cookie"] = {}
    for endpoint, rates in raw.get(BASELINE, {}).items():
        cookie_us = [1e6 / rate for rate in rates]
        result["against_cookie"][endpoint] = {
            "cookie_us_per_request": statistics.median(cookie_us),
            "ratio": median / statistics.median(cookie_us),
            "round_ratios": [g / c for g, c in zip(us, cookie_us, strict=True)],
        }
    return result


def memory_goal(memory: dict[str, dict[str, Any]], skipped: dict[str, str]) -> dict[str, Any]:
    ours = memory.get("ours-redis", {}).get("memory_usage_bytes")
    theirs = memory.get("flask-session-redis", {}).get("memory_usage_bytes")
    measured = ours / theirs if ours and theirs else None
    missing = [n for n in ("ours-redis", "flask-session-redis") if n not in memory]
    return {
        "goal": f"ours-redis MEMORY USAGE <= {MEMORY_GOAL}x flask-session-redis",
        "variant": "ours-redis",
        "endpoint": None,
        "against": "flask-session-redis",
        "target_ratio": MEMORY_GOAL,
        "ratio": measured,
        "status": goal_status(measured is not None and measured <= MEMORY_GOAL, measured),
        "not_measured_because": why_missing(missing, skipped) if measured is None else None,
    }


# -- the report ----------------------------------------------------------------------------------


def _us(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.0f}"


#: The requests-per-second table of a test-client run (run.py and sql_bench.py).
THROUGHPUT = (
    ("variant", "{variant}"),
    ("endpoint", "/{endpoint}"),
    ("median req/s", "{median:,.0f}"),
    ("min", "{min:,.0f}"),
    ("max", "{max:,.0f}"),
    ("vs cookie", lambda e: ratio(e["ratio_to_cookie"])),
    ("per round", lambda e: spread(e["round_ratios"])),
    ("+µs/req", lambda e: _us(e["extra_us_per_request"])),
)
PEER_COLUMNS = (
    ("ours", "{ours}"),
    ("Flask-Session", "{peer}"),
    ("endpoint", "/{endpoint}"),
    ("ours / Flask-Session", lambda c: ratio(c["ours_over_peer"])),
    ("per round", lambda c: spread(c["round_ratios"])),
    ("Flask-Session vs cookie", lambda c: ratio(c["peer_ratio_to_cookie"])),
    ("earlier reference", lambda c: ratio(c["reference_peer_ratio_to_cookie"])),
)
RAW_GET_COLUMNS = (
    ("cookie endpoint", "/{endpoint}"),
    ("cookie µs/request", "{cookie_us_per_request:.1f}"),
    ("GET / cookie request", "{ratio:.2f}"),
    ("per round", lambda item: spread(item["round_ratios"], "")),
)


def throughput_section(summary: dict[str, Any], text: str, heading: str | None = None) -> Section:
    rows = rows_of(summary, "variant", "endpoint")
    return Section(heading, [text], THROUGHPUT, "llrrrrrr", rows)


def peers_section(comparisons: list[dict[str, Any]]) -> Section:
    heading = "Ours against Flask-Session" if comparisons else None
    return Section(heading, (), PEER_COLUMNS, "lllrrrr", comparisons)


def raw_get_section(raw_get: dict[str, Any] | None) -> Section:
    if raw_get is None:
        return Section()
    text = (
        f"A redis-py `GET` of a {len(SAMPLE)}-byte value on the same redis-server, timed in the"
        f" same rounds: median {raw_get['median_us']:.1f} µs (min {raw_get['min_us']:.1f}, max"
        f" {raw_get['max_us']:.1f})."
    )
    rows = rows_of(raw_get["against_cookie"], "endpoint")
    heading = "One raw redis-py GET against one cookie-session request"
    return Section(heading, [text], RAW_GET_COLUMNS, "lrrr", rows)


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["settings"]
    packages = machine["packages"]
    redis_text = (
        f", redis-server {machine['redis_server']}, redis-py {packages['redis']}"
        if machine.get("redis_server")
        else ""
    )
    intro = [
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs,"
        f" SQLite {machine['sqlite']}{redis_text}; Flask {packages['flask']},"
        f" Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, SQLAlchemy {packages['sqlalchemy']}.",
        f"{settings['rounds']} round(s) of ~{settings['seconds']} s per measurement, variants"
        f" interleaved (rotated each round); load average {report['load_average_before']} before,"
        f" {report['load_average_after']} after; {report['duration_seconds']:.0f} s in all.",
    ]
    text = (
        "Requests per second (median over rounds, min, max). *vs cookie* is the median divided"
        " by the cookie session's median for the same endpoint in this run; *per round* is the"
        " range of the same ratio taken round by round; *+µs/req* is the time per request"
        " added (or, negative, saved) against the cookie session, from the two medians."
    )
    sections = [
        throughput_section(report["summary"], text),
        skipped_section(report["skipped"]),
        Section("Goals", notes=goal_lines(report["goals"])),
        raw_get_section(report["raw_redis_get"]),
        peers_section(report["comparisons"]),
        round_trips_section(report["round_trips"]),
        memory_section(report["memory"]),
    ]
    title = f"Flask test-client benchmark, {report['date']}"
    return render(title, intro, sections, report["command"])


# -- command line --------------------------------------------------------------------------------


def start_servers(servers: Servers, variants: Sequence[Variant]) -> None:
    needs = {need for variant in variants for need in variant.needs}
    if "redis" in needs:
        servers.start("redis", lambda: redis_server(servers.tmp / "redis"))
    if "memcached" in needs:
        servers.start("memcached", lambda: memcached_server(servers.tmp / "memcached"))


def profile(args: Any) -> str:
    name, _, endpoint = args.profile.partition(":")
    variant = VARIANTS_BY_NAME[name]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        start_servers(servers, [variant])
        running = start(variant, servers, [endpoint])
        try:
            running.calibrate(args.seconds * 5, args.warmup)
            sections = [("redis-py functions", "site-packages/redis/")] if variant.needs else []
            return profile_requests(running, endpoint, sections, args.top)
        finally:
            running.built.close()


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=11, seconds=0.4, warmup=0.3)
    parser.add_argument(
        "--only", help=f"comma-separated variants, of: {', '.join(VARIANTS_BY_NAME)}"
    )
    parser.add_argument(
        "--profile", metavar="VARIANT:ENDPOINT", help="print a cProfile of one variant and endpoint"
    )
    parser.add_argument("--top", type=int, default=25, help="rows per profile listing")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.02, 0.01
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--rounds must be >= 1, --seconds > 0, --warmup >= 0")
    args.variants = [VARIANTS_BY_NAME[n] for n in choose(parser, args.only, list(VARIANTS_BY_NAME))]
    name, _, endpoint = (args.profile or "").partition(":")
    if args.profile and (name not in VARIANTS_BY_NAME or endpoint not in ENDPOINTS):
        parser.error(f"--profile wants VARIANT:ENDPOINT, endpoint one of {ENDPOINTS}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.profile:
        print(profile(args))
        return 0
    record = Record("testclient", argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        start_servers(servers, args.variants)
        variants, skipped = runnable(args.variants, servers)
        if "redis" in servers.missing:
            skipped[RAW_GET] = servers.missing["redis"]
        results = run(args, servers, variants)
        port = servers.started.get("redis")
        version = None if port is None else redis_version(port)
    summary = summarize(results["raw"])
    report = record.report(
        machine=machine_info(PACKAGES, redis_server=version),
        settings={
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": {v.name: v.description for v in variants},
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results["batch"],
            "raw_get_per_measurement": results["raw_get_batch"],
        },
        skipped=skipped,
        order=results["order"],
        raw_requests_per_second=results["raw"],
        raw_redis_gets_per_second=results["raw_get"],
        summary=summary,
        raw_redis_get=summarize_raw_get(results["raw_get"], results["raw"]),
        goals=[
            *evaluate_goals(GOALS, results["raw"], skipped),
            memory_goal(results["memory"], skipped),
        ],
        comparisons=compare_to_peers(results["raw"], PEERS, REFERENCE),
        round_trips=results["round_trips"],
        memory=results["memory"],
    )
    suffix = "-only-" + "+".join(v.name for v in args.variants) if args.only else ""
    return finish(report, render_markdown(report), args.quick, suffix)


if __name__ == "__main__":
    run_main(main)
