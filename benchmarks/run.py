"""Requests per second through Flask's test client, every variant interleaved round by round,
as ratios to the cookie session of the same run; then what reaches each store and the memory of
a Redis session (store_calls.py). See README.md.

    python benchmarks/run.py                      # the full run (what `make bench` does)
    python benchmarks/run.py --quick              # smoke check: 1 round, tiny batches, no files
    python benchmarks/run.py --rounds 5 --seconds 0.4 --only ours-sqlite,cookie
"""

from __future__ import annotations

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
OURS_PG = f"ours-{PG}"
#: (variant, endpoint, target, against): requests per second at least target x against's.
GOALS = (
    ("ours-sqlite", "none", 0.95, h.BASELINE),
    ("ours-sqlite", "get", 0.9, h.BASELINE),
    ("ours-sqlite", "set", 0.5, h.BASELINE),
    ("ours-redis", "none", 0.95, h.BASELINE),
    ("ours-redis", "get", 0.6, h.BASELINE),
    ("ours-redis", "get", 1.3, "flask-session-redis"),
    ("ours-redis", "set", 0.65, h.BASELINE),
    (OURS_PG, "get", 0.55, h.BASELINE),
    (OURS_PG, "get", 3.0, FLASK_SESSION_PG),
)
#: Ours may take at most this many times the memory of Flask-Session's Redis session.
MEMORY_GOAL = 1.5
#: Ours against the peer that does the same job, and against the floor (see FLOOR_TEXT).
PEERS = [("ours-sqlite", "flask-session-sqlalchemy"), ("ours-redis", "flask-session-redis")]
PEERS += [(OURS_PG, FLASK_SESSION_PG), ("ours-redis", "floor-redis"), (OURS_PG, f"floor-{PG}")]


def run(args: Any, servers: h.Servers, variants: Sequence[h.Variant]) -> dict[str, Any]:
    """The timed rounds, then the counts."""
    with h.started(variants, servers, ENDPOINTS) as runnings:
        for running in runnings:
            running.calibrate(args.seconds, args.warmup)
        order = h.run_rounds(runnings, args.rounds)
        for running in runnings:
            running.verify()  # timing must not have broken anything either
        return {
            "order": order,
            "requests_per_measurement": {r.name: r.batch for r in runnings},
            "raw_requests_per_second": {r.name: r.rates for r in runnings},
            **store_calls.count_all(runnings, servers),
        }


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
    "ours: {ours} | against: {peer} | endpoint: /{endpoint} | ours / it: {ours_over_peer:x}"
    " | per round: {round_ratios:spread} | it vs cookie: {peer_ratio_to_cookie:x}"
)
FLOOR_TEXT = (
    "A floor is the cookie session plus, on each request, one read with the least client work"
    " there is (a raw socket for Redis, libpq for PostgreSQL): what one round trip costs. A store"
    " that reads once per request passes it by at most what its session handling saves against"
    " Flask's (ours-memory's /get)."
)


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
        Section(
            "Ours against Flask-Session and the floor" if peers else None,
            [FLOOR_TEXT],
            PEER_COLUMNS,
            "lllrrr",
            peers,
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
        goals=goals(results, skipped),
        comparisons=h.compare_to_peers(raw, summary, PEERS),
    )


if __name__ == "__main__":
    report.run_main(main)
