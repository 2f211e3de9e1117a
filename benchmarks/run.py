"""Requests per second through Flask's test client, in one process: Flask's cookie session,
Flask-ServerSession (memory, SQLite, Redis, Memcached, PostgreSQL and MariaDB stores) and
Flask-Session 0.8 (SQLAlchemy on SQLite and on PostgreSQL, and Redis); the servers are started,
and stopped, by the run itself (variants.py).

Every variant serves the same app; variants are interleaved round by round and each result is
reported as a ratio to the cookie session measured in the same run, so that a noisy, shared
machine moves all numbers together instead of skewing one comparison. After the timed rounds the
run counts what reaches the store for each kind of request (Redis commands, SQL statements) and
measures the memory one stored Redis session takes (``MEMORY USAGE``); in the same rounds it
breaks ours' SQL reads down (sql_read.py). See benchmarks/README.md.

    python benchmarks/run.py                      # the full run (what `make bench` does)
    python benchmarks/run.py --quick              # smoke check: 1 round, tiny batches, no files
    python benchmarks/run.py --rounds 5 --seconds 0.4 --only ours-sqlite,cookie
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import (
    BASELINE,
    HOST,
    Goal,
    Probe,
    Running,
    Servers,
    Timed,
    Variant,
    compare_to_peers,
    evaluate_goals,
    goal_result,
    run_rounds,
    runnable,
    started,
    summarize,
    why_missing,
)
from redis_counts import (
    SAMPLE,
    count_round_trips,
    measure_memory,
    memory_section,
    redis_version,
)
from report import (
    Record,
    Section,
    arguments,
    choose,
    counts,
    expected,
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
from sql_read import (
    InstrumentedGet,
    breakdown_section,
    build_probes,
    no_session_probe,
    summarize_breakdown,
)
from sql_server import OURS_MARIADB, OURS_PG, count_statements
from variants import FLASK_SESSION_PG, VARIANTS_BY_NAME, start_servers

ENDPOINTS = ("none", "get", "set")
RAW_GET_KEY = "bench:raw-get"
RAW_GET = "raw-redis-get"

PACKAGES: tuple[str, ...] = ("flask", "werkzeug", "itsdangerous", "flask-serversession")
PACKAGES += ("flask-session", "flask-sqlalchemy", "sqlalchemy", "msgspec", "redis", "gunicorn")
PACKAGES += ("psycopg", "pymysql")

GOALS = (
    Goal("ours-sqlite", "none", 0.95),
    Goal("ours-sqlite", "get", 0.8),
    Goal("ours-sqlite", "set", 0.5),
    Goal("ours-redis", "none", 0.95),
    Goal("ours-redis", "get", 0.6),
    Goal("ours-redis", "get", 1.3, against="flask-session-redis"),
    Goal("ours-redis", "set", 0.65),
    Goal(OURS_PG, "get", 0.5),
    Goal(OURS_PG, "get", 3.0, against=FLASK_SESSION_PG),
)
#: Ours may take at most this many times the memory of Flask-Session's Redis session.
MEMORY_GOAL = 1.5
#: Flask-Session's stores against the cookie session, measured earlier on this machine.
REFERENCE: dict[str, dict[str, float]] = {
    "flask-session-sqlalchemy": {"get": 0.11, "set": 0.15},
    "flask-session-redis": {"none": 0.39, "get": 0.45, "set": 0.58},
}
#: Ours against the peer that does the same job.
PEERS = (
    ("ours-sqlite", "flask-session-sqlalchemy"),
    ("ours-redis", "flask-session-redis"),
    (OURS_PG, FLASK_SESSION_PG),
)
# -- the run -------------------------------------------------------------------------------------


def raw_get_probe(port: int) -> Probe:
    """One redis-py ``GET`` of a small value on the run's redis-server, timed like a variant:
    what a single round trip costs, to set against a cookie-session request."""
    import redis

    # redis-py's defaults, as Flask-Session's client; a value of a session's size.
    client = redis.Redis(host=HOST, port=port)
    client.set(RAW_GET_KEY, SAMPLE)
    return Probe(RAW_GET, lambda: client.get(RAW_GET_KEY) is not None, client.close)


def sql_probes(runnings: Sequence[Running], servers: Servers) -> list[Probe]:
    """Where the time of ours' SQL reads goes (sql_read.py), when an SQL store is measured."""
    ours = [r for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
    if not ours:
        return []
    probes = [no_session_probe()]
    for running in ours:
        probes += build_probes(running, servers.require(running.variant.needs[0]))
    return probes


def count_store_calls(runnings: Sequence[Running], servers: Servers) -> dict[str, Any]:
    """After the timed rounds (MONITOR must not slow them down): what reaches each store."""
    counted: dict[str, Any] = {"store_calls": {}, "memory": {}}
    for running in runnings:
        if running.built.redis_prefix is not None:
            port = servers.require("redis")
            counted["store_calls"][running.name] = count_round_trips(running, port)
            counted["memory"][running.name] = measure_memory(running, port)
        if running.built.engine is not None:
            counted["store_calls"][running.name] = count_statements(running)
    return counted


def run(args: Any, servers: Servers, variants: Sequence[Variant]) -> dict[str, Any]:
    """The timed rounds (variants, probes, ours' instrumented SQL reads), then the counts."""
    results: dict[str, Any] = {}
    with started(variants, servers, ENDPOINTS) as runnings, ExitStack() as stack:
        probes = sql_probes(runnings, servers)
        if "redis" in servers.started:
            probes.append(raw_get_probe(servers.started["redis"]))
        for probe in probes:
            stack.callback(probe.close)
        instrumented = [InstrumentedGet(r) for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
        timed: list[Timed] = [*runnings, *probes, *instrumented]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        results["order"] = run_rounds(timed, args.rounds)
        for running in runnings:
            running.verify()  # timing must not have broken anything either
        results["raw"] = {r.name: r.rates for r in runnings}
        results["batch"] = {r.name: r.batch for r in runnings}
        results["batch"].update({p.name: {"calls": p.batch} for p in probes})
        results["probes_us"] = {p.name: p.us for p in probes}
        results["instrumented"] = {i.kind: i.rounds for i in instrumented}
        results["raw_get"] = [1e6 / us for us in results["probes_us"].get(RAW_GET, [])]
        results.update(count_store_calls(runnings, servers))
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
    return goal_result(
        f"ours-redis MEMORY USAGE <= {MEMORY_GOAL}x flask-session-redis",
        measured,
        MEMORY_GOAL,
        at_most=True,
        not_measured_because=why_missing(missing, skipped) if measured is None else None,
    )


# -- the report ----------------------------------------------------------------------------------


def _us(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.0f}"


#: The requests-per-second table.
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


CALL_COLUMNS = (
    ("variant", "{variant}"),
    ("endpoint", "/{endpoint}"),
    ("store calls", "{calls}"),
    ("expected", lambda r: expected(r["calls"], r["expected"])),
    ("sent", lambda r: counts(r["sent"])),
    ("in scripts", lambda r: counts(r["in_scripts"])),
)


def calls_section(calls: dict[str, dict[str, dict[str, Any]]]) -> Section:
    if not calls:
        return Section()
    text = (
        "One request of each kind, after one that is not counted (connections made, scripts"
        " loaded; the rate-limited touch is not due). Redis, seen by the server's `MONITOR`:"
        " *store calls* are the commands a client sent (a round trip each), *in scripts* those"
        " its Lua scripts ran. SQL: the statements SQLAlchemy sent (`before_cursor_execute`),"
        " and under *sent* also the COMMITs it ran (a driver's own BEGIN is not seen); `WITH`"
        " is our read with its touch riding along. *expected* is what issues 3 and 4 require of"
        " ours. `/rw` reads, then writes."
    )
    rows = rows_of(calls, "variant", "endpoint")
    return Section("Store calls per request", [text], CALL_COLUMNS, "llrrll", rows)


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
        f" Flask-Session {packages['flask-session']}, SQLAlchemy {packages['sqlalchemy']}"
        + "".join(f", {kind} {v}" for kind, v in machine.get("sql_servers", {}).items())
        + ".",
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
        calls_section(report["store_calls"]),
        memory_section(report["memory"]),
        *(breakdown_section(item) for item in report["read_breakdown"].values()),
    ]
    title = f"Flask test-client benchmark, {report['date']}"
    return render(title, intro, sections, report["command"])


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=11, seconds=0.4, warmup=0.3)
    parser.add_argument(
        "--only", help=f"comma-separated variants, of: {', '.join(VARIANTS_BY_NAME)}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.02, 0.01
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--rounds must be >= 1, --seconds > 0, --warmup >= 0")
    args.variants = [VARIANTS_BY_NAME[n] for n in choose(parser, args.only, list(VARIANTS_BY_NAME))]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
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
        sql = {
            k: servers.started[k].describe()
            for k in ("postgresql", "mariadb")
            if k in servers.started
        }
    summary = summarize(results["raw"])
    report = record.report(
        machine=machine_info(PACKAGES, redis_server=version, sql_servers=sql),
        settings={
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": {v.name: v.description for v in variants},
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results["batch"],
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
        store_calls=results["store_calls"],
        memory=results["memory"],
        read_breakdown=summarize_breakdown(results["probes_us"], results["instrumented"], summary),
    )
    suffix = "-only-" + "+".join(v.name for v in args.variants) if args.only else ""
    return finish(report, render_markdown(report), args.quick, suffix)


if __name__ == "__main__":
    run_main(main)
