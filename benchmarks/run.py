"""Requests per second through Flask's test client, every variant interleaved round by round,
as ratios to the cookie session of the same run; then what reaches each store and the memory of
a Redis session (store_calls.py). See README.md.

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

import harness as h
import report
import store_calls
from report import Section, columns
from variants import FLASK_SESSION_PG, PG, VARIANTS_BY_NAME, start_variants

ENDPOINTS = ("none", "get", "set")
RAW_GET = "raw-redis-get"
OURS_PG = f"ours-{PG}"
#: (variant, endpoint, target, against): requests per second at least target x against's.
GOALS = (
    ("ours-sqlite", "none", 0.95, h.BASELINE),
    ("ours-sqlite", "get", 0.8, h.BASELINE),
    ("ours-sqlite", "set", 0.5, h.BASELINE),
    ("ours-redis", "none", 0.95, h.BASELINE),
    ("ours-redis", "get", 0.6, h.BASELINE),
    ("ours-redis", "get", 1.3, "flask-session-redis"),
    ("ours-redis", "set", 0.65, h.BASELINE),
    (OURS_PG, "get", 0.5, h.BASELINE),
    (OURS_PG, "get", 3.0, FLASK_SESSION_PG),
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


def raw_get_probe(port: int) -> h.Probe:
    """One redis-py ``GET`` of a session-sized value, timed like a variant: one round trip."""
    import redis

    client = redis.Redis(host=h.HOST, port=port)
    client.set("bench:raw-get", store_calls.SAMPLE)
    return h.Probe(RAW_GET, lambda: client.get("bench:raw-get") is not None, client.close)


def run(args: Any, servers: h.Servers, variants: Sequence[h.Variant]) -> dict[str, Any]:
    """The timed rounds (the variants and the raw GET), then the counts."""
    with h.started(variants, servers, ENDPOINTS) as runnings, ExitStack() as stack:
        probes = [raw_get_probe(servers.started["redis"])] if "redis" in servers.started else []
        for probe in probes:
            stack.callback(probe.close)
        timed: list[Any] = [*runnings, *probes]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        order = h.run_rounds(timed, args.rounds)
        for running in runnings:
            running.verify()  # timing must not have broken anything either
        batch = {r.name: r.batch for r in runnings} | {p.name: {"calls": p.batch} for p in probes}
        return {
            "order": order,
            "requests_per_measurement": batch,
            "raw_requests_per_second": {r.name: r.rates for r in runnings},
            "raw_redis_gets_per_second": [1e6 / us for probe in probes for us in probe.us],
            **store_calls.count_all(runnings, servers),
        }


def summarize_raw_get(raw_get: list[float], raw: dict[str, Any]) -> dict[str, Any] | None:
    """One GET's cost in µs, and against the time of one cookie-session request per endpoint."""
    if not raw_get:
        return None
    us = [1e6 / rate for rate in raw_get]
    median = statistics.median(us)
    result: dict[str, Any] = {"median_us": median, "min_us": min(us), "max_us": max(us)}
    result |= {"against_cookie": {}}
    for endpoint, rates in raw.get(h.BASELINE, {}).items():
        cookie_us = [1e6 / rate for rate in rates]
        result["against_cookie"][endpoint] = {
            "cookie_us_per_request": statistics.median(cookie_us),
            "ratio": median / statistics.median(cookie_us),
            "round_ratios": [g / c for g, c in zip(us, cookie_us, strict=True)],
        }
    return result


def goals(results: dict[str, Any], skipped: dict[str, str]) -> list[dict[str, Any]]:
    """The throughput goals, and ours' Redis memory against Flask-Session's."""
    bytes_of = {v: m["memory_usage_bytes"] for v, m in results["memory"].items()}
    ours, theirs = bytes_of.get("ours-redis"), bytes_of.get("flask-session-redis")
    measured = ours / theirs if ours and theirs else None
    why = h.why_missing(("ours-redis", "flask-session-redis"), bytes_of, skipped)
    text = f"ours-redis MEMORY USAGE <= {MEMORY_GOAL}x flask-session-redis"
    memory = h.goal_result(text, measured, MEMORY_GOAL, True, not_measured_because=why)
    return [*h.evaluate_goals(GOALS, results["raw_requests_per_second"], skipped), memory]


THROUGHPUT = columns(
    "variant: {variant} | endpoint: /{endpoint} | median req/s: {median:,.0f} | min: {min:,.0f}"
    " | max: {max:,.0f} | vs cookie: {ratio_to_cookie:x} | per round: {round_ratios:spread}"
    " | +µs/req: {extra_us_per_request:+.0f}"
)
THROUGHPUT_TEXT = (
    "Requests per second (median over rounds, min, max). *vs cookie* is the median divided by"
    " the cookie session's median for the same endpoint in this run; *per round* is the range"
    " of the same ratio taken round by round; *+µs/req* is the time per request added (or,"
    " negative, saved) against the cookie session, from the two medians."
)
PEER_COLUMNS = columns(
    "ours: {ours} | Flask-Session: {peer} | endpoint: /{endpoint} | ours / Flask-Session:"
    " {ours_over_peer:x} | per round: {round_ratios:spread} | Flask-Session vs cookie:"
    " {peer_ratio_to_cookie:x} | earlier reference: {reference_peer_ratio_to_cookie:x}"
)
RAW_GET_COLUMNS = columns(
    "cookie endpoint: /{endpoint} | cookie µs/request: {cookie_us_per_request:.1f}"
    " | GET / cookie request: {ratio:.2f} | per round: {round_ratios:range}"
)


def raw_get_sections(raw_get: dict[str, Any] | None) -> list[Section]:
    if raw_get is None:
        return []
    text = report.FORMAT(
        "A redis-py `GET` of a {size}-byte value on the same redis-server, timed in the same"
        " rounds: median {median_us:.1f} µs (min {min_us:.1f}, max {max_us:.1f}).",
        (),
        {**raw_get, "size": len(store_calls.SAMPLE)},
    )
    rows = report.rows_of(raw_get["against_cookie"], "endpoint")
    heading = "One raw redis-py GET against one cookie-session request"
    return [Section(heading, [text], RAW_GET_COLUMNS, "lrrr", rows)]


def render_markdown(run: dict[str, Any]) -> str:
    settings = run["settings"]
    intro = [
        report.machine_line(run),
        f"{settings['rounds']} round(s) of ~{settings['seconds']} s per measurement, variants"
        f" interleaved (rotated each round); {report.load_line(run)}",
    ]
    peers = run["comparisons"]
    rows = report.rows_of(run["summary"], "variant", "endpoint")
    sections = [
        Section(None, [THROUGHPUT_TEXT], THROUGHPUT, "llrrrrrr", rows),
        report.skipped_section(run["skipped"]),
        Section("Goals", notes=report.goal_lines(run["goals"])),
        *raw_get_sections(run["raw_redis_get"]),
        Section(
            "Ours against Flask-Session" if peers else None, (), PEER_COLUMNS, "lllrrrr", peers
        ),
        *store_calls.sections(run),
    ]
    return report.render(
        f"Flask test-client benchmark, {run['date']}", intro, sections, run["command"]
    )


def main(argv: Sequence[str]) -> int:
    quick = {"rounds": 1, "seconds": 0.02, "warmup": 0.01}
    args = report.parse(
        __doc__, argv, rounds=11, seconds=0.4, warmup=0.3, only=VARIANTS_BY_NAME, quick=quick
    )
    record = report.Record("testclient", argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        servers = h.Servers(stack, Path(tmp))
        variants, skipped = start_variants(servers, [VARIANTS_BY_NAME[n] for n in args.variants])
        if "redis" in servers.missing:
            skipped[RAW_GET] = servers.missing["redis"]
        results = run(args, servers, variants)
    raw = results["raw_requests_per_second"]
    summary, batch = h.summarize(raw), results.pop("requests_per_measurement")
    settings = {k: getattr(args, k) for k in ("rounds", "seconds", "warmup", "quick")}
    settings |= {"variants": {v.name: v.description for v in variants}, "endpoints": ENDPOINTS}
    settings["requests_per_measurement"] = batch
    return record.finish(
        args,
        render_markdown,
        servers.versions,
        settings=settings,
        skipped=skipped,
        **results,
        summary=summary,
        raw_redis_get=summarize_raw_get(results["raw_redis_gets_per_second"], raw),
        goals=goals(results, skipped),
        comparisons=h.compare_to_peers(raw, summary, PEERS, REFERENCE),
    )


if __name__ == "__main__":
    report.run_main(main)
