"""Requests per second through Flask's test client, in one process: Flask's cookie session,
Flask-ServerSession (memory, SQLite, Redis, Memcached, PostgreSQL and MariaDB stores) and
Flask-Session 0.8 (SQLAlchemy on SQLite and on PostgreSQL, and Redis), variants interleaved
round by round, as ratios to the cookie session of the same run; then what reaches each store,
the memory of one Redis session and where ours' SQL reads spend their time (store_calls.py).
See benchmarks/README.md.

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

import store_calls
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
from report import (
    Record,
    Section,
    finish,
    goal_lines,
    machine_info,
    parse,
    ratio,
    render,
    rows_of,
    run_main,
    skipped_section,
    spread,
)
from variants import (
    FLASK_SESSION_PG,
    MARIADB,
    PG,
    VARIANTS_BY_NAME,
    needed,
    server_version,
    start_servers,
)

ENDPOINTS = ("none", "get", "set")
RAW_GET_KEY = "bench:raw-get"
RAW_GET = "raw-redis-get"
PACKAGES: tuple[str, ...] = (
    "flask",
    "werkzeug",
    "itsdangerous",
    "flask-serversession",
    "flask-session",
)
PACKAGES += ("flask-sqlalchemy", "sqlalchemy", "msgspec", "redis", "gunicorn", "psycopg", "pymysql")
OURS_PG, OURS_MARIADB = f"ours-{PG}", f"ours-{MARIADB}"

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


def raw_get_probe(port: int) -> Probe:
    """One redis-py ``GET`` of a small value on the run's redis-server, timed like a variant:
    what a single round trip costs, to set against a cookie-session request."""
    import redis

    # redis-py's defaults, as Flask-Session's client; a value of a session's size.
    client = redis.Redis(host=HOST, port=port)
    client.set(RAW_GET_KEY, store_calls.SAMPLE)
    return Probe(RAW_GET, lambda: client.get(RAW_GET_KEY) is not None, client.close)


def probes(runnings: Sequence[Running], servers: Servers) -> list[Probe]:
    """The raw GET; where the time of ours' SQL reads goes, when an SQL store is measured."""
    sql = [r for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
    found = [store_calls.no_session_probe()] if sql else []
    for running in sql:
        found += store_calls.build_probes(running, servers.require(running.variant.needs[0]))
    if "redis" in servers.started:
        found.append(raw_get_probe(servers.started["redis"]))
    return found


def count_store_calls(runnings: Sequence[Running], servers: Servers) -> dict[str, Any]:
    """After the timed rounds (MONITOR must not slow them down): what reaches each store."""
    counted: dict[str, Any] = {"store_calls": {}, "memory": {}}
    for running in runnings:
        if running.built.redis_prefix is not None:
            port = servers.require("redis")
            counted["store_calls"][running.name] = store_calls.count_round_trips(running, port)
            counted["memory"][running.name] = store_calls.measure_memory(running, port)
        if running.built.engine is not None:
            counted["store_calls"][running.name] = store_calls.count_statements(running)
    return counted


def run(args: Any, servers: Servers, variants: Sequence[Variant]) -> dict[str, Any]:
    """The timed rounds (variants, probes, ours' instrumented SQL reads), then the counts."""
    with started(variants, servers, ENDPOINTS) as runnings, ExitStack() as stack:
        found = probes(runnings, servers)
        for probe in found:
            stack.callback(probe.close)
        sql = [r for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
        instrumented = [store_calls.InstrumentedGet(r) for r in sql]
        timed: list[Timed] = [*runnings, *found, *instrumented]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        results: dict[str, Any] = {"order": run_rounds(timed, args.rounds)}
        for running in runnings:
            running.verify()  # timing must not have broken anything either
        results["raw"] = {r.name: r.rates for r in runnings}
        results["batch"] = {r.name: r.batch for r in runnings}
        results["batch"].update({p.name: {"calls": p.batch} for p in found})
        results["probes_us"] = {p.name: p.us for p in found}
        results["instrumented"] = {i.kind: i.rounds for i in instrumented}
        results["raw_get"] = [1e6 / us for us in results["probes_us"].get(RAW_GET, [])]
        return results | count_store_calls(runnings, servers)


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
THROUGHPUT_TEXT = (
    "Requests per second (median over rounds, min, max). *vs cookie* is the median divided by"
    " the cookie session's median for the same endpoint in this run; *per round* is the range"
    " of the same ratio taken round by round; *+µs/req* is the time per request added (or,"
    " negative, saved) against the cookie session, from the two medians."
)


def raw_get_section(raw_get: dict[str, Any]) -> Section:
    text = (
        f"A redis-py `GET` of a {len(store_calls.SAMPLE)}-byte value on the same redis-server,"
        f" timed in the same rounds: median {raw_get['median_us']:.1f} µs (min"
        f" {raw_get['min_us']:.1f}, max {raw_get['max_us']:.1f})."
    )
    rows = rows_of(raw_get["against_cookie"], "endpoint")
    heading = "One raw redis-py GET against one cookie-session request"
    return Section(heading, [text], RAW_GET_COLUMNS, "lrrr", rows)


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings, packages = (
        report["machine"],
        report["settings"],
        report["machine"]["packages"],
    )
    redis = machine.get("redis_server")
    intro = [
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs,"
        f" SQLite {machine['sqlite']}"
        + (f", redis-server {redis}, redis-py {packages['redis']}" if redis else "")
        + f"; Flask {packages['flask']}, Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, SQLAlchemy {packages['sqlalchemy']}"
        + "".join(f", {kind} {v}" for kind, v in machine.get("sql_servers", {}).items())
        + ".",
        f"{settings['rounds']} round(s) of ~{settings['seconds']} s per measurement, variants"
        f" interleaved (rotated each round); load average {report['load_average_before']} before,"
        f" {report['load_average_after']} after; {report['duration_seconds']:.0f} s in all.",
    ]
    peers = report["comparisons"]
    sections = [
        Section(
            None,
            [THROUGHPUT_TEXT],
            THROUGHPUT,
            "llrrrrrr",
            rows_of(report["summary"], "variant", "endpoint"),
        ),
        skipped_section(report["skipped"]),
        Section("Goals", notes=goal_lines(report["goals"])),
        *([raw_get_section(report["raw_redis_get"])] if report["raw_redis_get"] else []),
        Section(
            "Ours against Flask-Session" if peers else None, (), PEER_COLUMNS, "lllrrrr", peers
        ),
        *([store_calls.calls_section(report["store_calls"])] if report["store_calls"] else []),
        *([store_calls.memory_section(report["memory"])] if report["memory"] else []),
        *map(store_calls.breakdown_section, report["read_breakdown"].values()),
    ]
    title = f"Flask test-client benchmark, {report['date']}"
    return render(title, intro, sections, report["command"])


def main(argv: Sequence[str]) -> int:
    quick: dict[str, Any] = {"rounds": 1, "seconds": 0.02, "warmup": 0.01}
    args = parse(
        __doc__, argv, rounds=11, seconds=0.4, warmup=0.3, only=VARIANTS_BY_NAME, quick=quick
    )
    chosen = [VARIANTS_BY_NAME[n] for n in args.variants]
    record = Record("testclient", argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        start_servers(servers, needed(chosen))
        variants, skipped = runnable(chosen, servers)
        if "redis" in servers.missing:
            skipped[RAW_GET] = servers.missing["redis"]
        results = run(args, servers, variants)
        version = server_version(servers, "redis")
        sql = {k: server_version(servers, k) for k in (PG, MARIADB) if k in servers.started}
    summary = summarize(results["raw"])
    report = record.report(
        machine=machine_info(PACKAGES, redis_server=version, sql_servers=sql),
        settings={
            **{k: getattr(args, k) for k in ("rounds", "seconds", "warmup", "quick")},
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
        read_breakdown=store_calls.summarize_breakdown(
            results["probes_us"], results["instrumented"], summary
        ),
    )
    return finish(report, render_markdown(report), args.quick, args.suffix)


if __name__ == "__main__":
    run_main(main)
