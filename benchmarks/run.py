"""Requests per second through Flask's test client: Flask's cookie session, Flask-ServerSession
(memory and SQLite stores) and Flask-Session 0.8 (SQLAlchemy on SQLite), in one process.

Every variant serves the same app; variants are interleaved round by round and each result is
reported as a ratio to the cookie session measured in the same run, so that a noisy, shared
machine moves all numbers together instead of skewing one comparison. See benchmarks/README.md.

    python benchmarks/run.py                      # the full run (what `make bench` does)
    python benchmarks/run.py --quick              # smoke check: 1 round, tiny batches, no files
    python benchmarks/run.py --rounds 5 --seconds 0.4 --only ours-sqlite,cookie
    python benchmarks/run.py --profile ours-sqlite:get   # cProfile one variant and endpoint
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import itertools
import json
import math
import os
import platform
import pstats
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient

ENDPOINTS = ("none", "get", "set")
BASELINE = "cookie"
USER = "alice"
CART = [1, 2, 3]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "flask",
    "werkzeug",
    "itsdangerous",
    "flask-serversession",
    "flask-session",
    "flask-sqlalchemy",
    "sqlalchemy",
    "msgspec",
)


class BenchmarkError(Exception):
    """A variant answered wrongly; its numbers would be meaningless."""


# -- the app -------------------------------------------------------------------------------------


def create_app(configure: Callable[[Flask], None]) -> Flask:
    """The one app every variant serves; ``configure`` installs the session implementation."""
    app = Flask(__name__)
    app.secret_key = "benchmark-secret-key-not-for-production"
    configure(app)
    counter = itertools.count(1)

    @app.get("/login")
    def login() -> str:
        session["user"] = USER
        session["cart"] = list(CART)
        return "ok"

    @app.get("/none")
    def none() -> str:
        return "none"

    @app.get("/get")
    def get() -> str:
        return str(session.get("user"))

    @app.get("/set")
    def set_() -> str:
        # A new value each time, so no implementation can skip the write as unchanged.
        n = next(counter)
        session["n"] = n
        return str(n)

    @app.get("/n")
    def read_n() -> str:
        return str(session.get("n"))

    return app


# -- variants ------------------------------------------------------------------------------------


@dataclass
class Built:
    """A variant's app, ready to serve, with what is needed to check and release it."""

    app: Flask
    #: Rows in the variant's session table, for variants that keep sessions in an SQLite file.
    stored_rows: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Path], Built]


def _count_rows(path: Path, table: str) -> Callable[[], int]:
    def count() -> int:
        # closing(): sqlite3's own context manager only ends the transaction.
        with closing(sqlite3.connect(path)) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0])

    return count


def _build_cookie(tmp: Path) -> Built:
    return Built(create_app(lambda app: None))


def _build_ours(store: str) -> Callable[[Flask], None]:
    from flask_serversession import ServerSession

    def configure(app: Flask) -> None:
        ServerSession(app, store=store)

    return configure


def _build_ours_memory(tmp: Path) -> Built:
    return Built(create_app(_build_ours("memory://")))


def _build_ours_sqlite(tmp: Path) -> Built:
    from flask_serversession import ServerSession

    path = tmp / "ours.sqlite3"
    # An absolute path gives the four slashes of an absolute SQLAlchemy-style URL.
    app = create_app(_build_ours(f"sqlite:///{path}"))
    return Built(
        app,
        stored_rows=_count_rows(path, "serversession"),
        close=ServerSession.store_of(app).close,
    )


def _build_flask_session_sqlalchemy(tmp: Path) -> Built:
    # Imported here so that runs without this variant need neither Flask-Session nor SQLAlchemy.
    try:
        from flask_session import Session  # type: ignore[import-untyped]
        from flask_sqlalchemy import SQLAlchemy
    except ImportError as exc:
        raise BenchmarkError(
            f"flask-session-sqlalchemy needs {exc.name}: pip install -e '.[bench]'"
            " (make bench does), or leave the variant out with --only"
        ) from exc

    path = tmp / "flask_session.sqlite3"
    db = SQLAlchemy()

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
            SESSION_TYPE="sqlalchemy",
            SESSION_SQLALCHEMY=db,
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        Session(app)

    app = create_app(configure)

    def close() -> None:
        with app.app_context():
            db.engine.dispose()

    return Built(app, stored_rows=_count_rows(path, "sessions"), close=close)


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _build_cookie),
    Variant("ours-memory", 'Flask-ServerSession, store="memory://"', _build_ours_memory),
    Variant("ours-sqlite", "Flask-ServerSession, SQLite file store", _build_ours_sqlite),
    Variant(
        "flask-session-sqlalchemy",
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", Flask-SQLAlchemy on an SQLite file',
        _build_flask_session_sqlalchemy,
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass(frozen=True)
class Goal:
    variant: str
    endpoint: str
    target: float


GOALS = (
    Goal("ours-sqlite", "none", 0.95),
    Goal("ours-sqlite", "get", 0.8),
    Goal("ours-sqlite", "set", 0.5),
)
#: Flask-Session's SQLAlchemy store against the cookie session, measured earlier on this machine.
REFERENCE = {"get": 0.11, "set": 0.15}


# -- running -------------------------------------------------------------------------------------


@dataclass
class Running:
    """One variant during a run: its app, its logged-in client and its batch sizes."""

    variant: Variant
    built: Built
    client: FlaskClient
    batch: dict[str, int] = field(default_factory=dict)


def _request(client: FlaskClient, path: str) -> str:
    # buffered=True consumes the body and closes the response, as a WSGI server does, so
    # call_on_close work (Flask-ServerSession's cleanup) runs as it would in production.
    response = client.get(path, buffered=True)
    if response.status_code != 200:
        raise BenchmarkError(f"GET {path} answered {response.status}")
    return response.get_data(as_text=True)


def _time_requests(client: FlaskClient, path: str, count: int) -> float:
    """Seconds for ``count`` requests, each checked for status 200."""
    get = client.get
    # Collect garbage left by the previous batch now, so it is not charged to this variant.
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        if get(path, buffered=True).status_code != 200:
            raise BenchmarkError(f"GET {path} failed during timing")
    return time.perf_counter() - start


def verify(running: Running) -> None:
    """Fail unless the variant really keeps the session: a broken session must not look fast."""
    name = running.variant.name
    client = running.client
    got = _request(client, "/get")
    if got != USER:
        raise BenchmarkError(f"{name}: /get returned {got!r}, expected {USER!r}")
    written = _request(client, "/set")
    read_back = _request(client, "/n")
    if read_back != written:
        raise BenchmarkError(f"{name}: /set wrote {written!r} but /n read back {read_back!r}")
    if _request(client, "/none") != "none":
        raise BenchmarkError(f"{name}: /none answered wrongly")
    if running.built.stored_rows is not None and running.built.stored_rows() < 1:
        raise BenchmarkError(f"{name}: the session is not in the store's table")


def start(variant: Variant, tmp: Path) -> Running:
    built = variant.build(tmp)
    client = built.app.test_client()
    if _request(client, "/login") != "ok":
        raise BenchmarkError(f"{variant.name}: /login failed")
    running = Running(variant, built, client)
    verify(running)
    return running


def calibrate(running: Running, seconds: float, warmup: float) -> None:
    """Warm up each endpoint, then pick the batch size that takes about ``seconds``."""
    for endpoint in ENDPOINTS:
        path = "/" + endpoint
        deadline = time.perf_counter() + warmup
        while time.perf_counter() < deadline:
            _request(running.client, path)
        count = 8
        while True:
            elapsed = _time_requests(running.client, path, count)
            if elapsed >= min(0.05, seconds / 2) or count >= 1 << 20:
                break
            count *= 2
        running.batch[endpoint] = max(1, math.ceil(count * seconds / elapsed))


def rotated(items: Sequence[Running], round_index: int) -> list[Running]:
    # Rotating instead of shuffling: every variant takes every position, reproducibly.
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Results:
    raw: dict[str, dict[str, list[float]]]
    order: list[list[str]]
    batch: dict[str, dict[str, int]]


def run(
    variants: Sequence[Variant], rounds: int, seconds: float, warmup: float, tmp: Path
) -> Results:
    runnings: list[Running] = []
    try:
        # Appended one by one so that a variant failing to start still closes the others.
        for variant in variants:
            runnings.append(start(variant, tmp))
        for running in runnings:
            calibrate(running, seconds, warmup)
        raw: dict[str, dict[str, list[float]]] = {
            r.variant.name: {e: [] for e in ENDPOINTS} for r in runnings
        }
        order: list[list[str]] = []
        for round_index in range(rounds):
            this_round = rotated(runnings, round_index)
            order.append([r.variant.name for r in this_round])
            for running in this_round:
                for endpoint in ENDPOINTS:
                    count = running.batch[endpoint]
                    elapsed = _time_requests(running.client, "/" + endpoint, count)
                    raw[running.variant.name][endpoint].append(count / elapsed)
            print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
        # Timing must not have broken anything either.
        for running in runnings:
            verify(running)
        return Results(raw, order, {r.variant.name: dict(r.batch) for r in runnings})
    finally:
        for running in runnings:
            running.built.close()


# -- reporting -----------------------------------------------------------------------------------


def summarize(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    base = raw.get(BASELINE)
    for name, by_endpoint in raw.items():
        summary[name] = {}
        for endpoint, rates in by_endpoint.items():
            entry: dict[str, Any] = {
                "median": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "ratio_to_cookie": None,
                "extra_us_per_request": None,
                "round_ratios": None,
            }
            if base is not None:
                base_rates = base[endpoint]
                base_median = statistics.median(base_rates)
                entry["ratio_to_cookie"] = entry["median"] / base_median
                # The test client's own cost is in every variant and pulls ratios toward 1;
                # the difference in time per request is the session's cost on its own.
                entry["extra_us_per_request"] = 1e6 / entry["median"] - 1e6 / base_median
                # Same-round ratios show how far noise moved the comparison between rounds.
                entry["round_ratios"] = [r / b for r, b in zip(rates, base_rates, strict=True)]
            summary[name][endpoint] = entry
    return summary


def evaluate_goals(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    goals = []
    for goal in GOALS:
        ratio = summary.get(goal.variant, {}).get(goal.endpoint, {}).get("ratio_to_cookie")
        if ratio is None:
            status = "NOT MEASURED"
        else:
            status = "MET" if ratio >= goal.target else "MISSED"
        goals.append(
            {
                "variant": goal.variant,
                "endpoint": goal.endpoint,
                "target_ratio_to_cookie": goal.target,
                "ratio_to_cookie": ratio,
                "status": status,
            }
        )
    return goals


def compare_to_flask_session(
    summary: dict[str, dict[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    ours = summary.get("ours-sqlite")
    theirs = summary.get("flask-session-sqlalchemy")
    comparisons = []
    for endpoint in ("get", "set"):
        speedup = None
        theirs_to_cookie = None
        if ours is not None and theirs is not None:
            speedup = ours[endpoint]["median"] / theirs[endpoint]["median"]
        if theirs is not None:
            theirs_to_cookie = theirs[endpoint]["ratio_to_cookie"]
        comparisons.append(
            {
                "endpoint": endpoint,
                "ours_sqlite_over_flask_session": speedup,
                "flask_session_ratio_to_cookie": theirs_to_cookie,
                "reference_flask_session_ratio_to_cookie": REFERENCE[endpoint],
            }
        )
    return comparisons


def machine_info() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            packages[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            packages[package] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "packages": packages,
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _us(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.0f}"


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    lines = [
        f"# Flask test-client benchmark, {report['date']}",
        "",
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs,"
        f" SQLite {machine['sqlite']}; Flask {packages['flask']},"
        f" Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, SQLAlchemy {packages['sqlalchemy']}.",
        f"{report['settings']['rounds']} round(s) of ~{report['settings']['seconds']} s per"
        f" measurement, variants interleaved (rotated each round); load average"
        f" {report['load_average_before']} before, {report['load_average_after']} after;"
        f" {report['duration_seconds']:.0f} s in all.",
        "",
        "Requests per second (median over rounds, min, max). *vs cookie* is the median divided"
        " by the cookie session's median for the same endpoint in this run; *per round* is the"
        " range of the same ratio taken round by round; *+µs/req* is the time per request"
        " added (or, negative, saved) against the cookie session, from the two medians.",
        "",
        "| variant | endpoint | median req/s | min | max | vs cookie | per round | +µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_endpoint in report["summary"].items():
        for endpoint, entry in by_endpoint.items():
            round_ratios = entry["round_ratios"]
            spread = (
                "n/a"
                if round_ratios is None
                else f"{min(round_ratios):.2f}-{max(round_ratios):.2f}x"
            )
            lines.append(
                f"| {name} | /{endpoint} | {entry['median']:,.0f} | {entry['min']:,.0f}"
                f" | {entry['max']:,.0f} | {_x(entry['ratio_to_cookie'])} | {spread}"
                f" | {_us(entry['extra_us_per_request'])} |"
            )
    lines += ["", "## Goals", ""]
    for goal in report["goals"]:
        lines.append(
            f"- **{goal['status']}**: {goal['variant']} /{goal['endpoint']} >="
            f" {goal['target_ratio_to_cookie']}x cookie (measured {_x(goal['ratio_to_cookie'])})"
        )
    lines += ["", "## ours-sqlite against Flask-Session (SQLAlchemy on SQLite)", ""]
    for item in report["comparisons"]:
        lines.append(
            f"- /{item['endpoint']}: ours-sqlite is {_x(item['ours_sqlite_over_flask_session'])}"
            f" Flask-Session's throughput; Flask-Session is"
            f" {_x(item['flask_session_ratio_to_cookie'])} cookie here (reference on this"
            f" machine: {item['reference_flask_session_ratio_to_cookie']}x)"
        )
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        *(["make bench"] if report["command"] == "python benchmarks/run.py" else []),
        report["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    # A run interrupted while writing must not leave a half file that looks like a result.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# -- profiling -----------------------------------------------------------------------------------


def profile(variant: Variant, endpoint: str, seconds: float, warmup: float, top: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        running = start(variant, Path(tmp))
        try:
            calibrate(running, seconds, warmup)
            count = running.batch[endpoint]
            profiler = cProfile.Profile()
            profiler.enable()
            _time_requests(running.client, "/" + endpoint, count)
            profiler.disable()
        finally:
            running.built.close()
    out = io.StringIO()
    out.write(f"cProfile of {count} requests to {variant.name} /{endpoint}\n")
    stats = pstats.Stats(profiler, stream=out)
    # The library's own functions first: in a full listing they drown in Werkzeug's test client.
    out.write("\n== Flask-ServerSession functions, by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats("flask_serversession", top)
    out.write("\n== All functions, by own time ==\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    out.write("\n== All functions, by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=11, help="rounds (default 11)")
    parser.add_argument(
        "--seconds", type=float, default=0.4, help="target seconds per measurement (default 0.4)"
    )
    parser.add_argument(
        "--warmup", type=float, default=0.3, help="warm-up seconds per endpoint (default 0.3)"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated variants to run, of: {', '.join(VARIANTS_BY_NAME)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 1 round, tiny batches, writes no files"
    )
    parser.add_argument(
        "--profile",
        metavar="VARIANT:ENDPOINT",
        help="print a cProfile of one variant and endpoint instead of benchmarking",
    )
    parser.add_argument("--top", type=int, default=25, help="rows per profile listing")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.02, 0.01
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--rounds must be >= 1, --seconds > 0, --warmup >= 0")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(VARIANTS_BY_NAME)
    unknown = [n for n in names if n not in VARIANTS_BY_NAME]
    if unknown or not names:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS_BY_NAME)}")
    args.variants = [VARIANTS_BY_NAME[n] for n in dict.fromkeys(names)]
    if args.profile:
        name, _, endpoint = args.profile.partition(":")
        if name not in VARIANTS_BY_NAME or endpoint not in ENDPOINTS:
            parser.error(f"--profile wants VARIANT:ENDPOINT, endpoint one of {ENDPOINTS}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.profile:
        name, _, endpoint = args.profile.partition(":")
        variant = VARIANTS_BY_NAME[name]
        print(profile(variant, endpoint, args.seconds * 5, args.warmup, args.top))
        return 0

    started = dt.datetime.now(dt.timezone.utc).astimezone()
    load_before = _load()
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results = run(args.variants, args.rounds, args.seconds, args.warmup, Path(tmp))
    duration = time.perf_counter() - clock

    summary = summarize(results.raw)
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    report: dict[str, Any] = {
        "benchmark": "testclient",
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": {v.name: v.description for v in args.variants},
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results.batch,
        },
        "load_average_before": load_before,
        "load_average_after": _load(),
        "duration_seconds": round(duration, 1),
        "order": results.order,
        "raw_requests_per_second": results.raw,
        "summary": summary,
        "goals": evaluate_goals(summary),
        "comparisons": compare_to_flask_session(summary),
    }
    markdown = render_markdown(report)
    print(markdown)

    if args.quick:
        print("(--quick: smoke check only, no result files written)")
    else:
        stem = f"{report['date']}-testclient"
        if args.only:
            # A partial run must not overwrite the day's full results.
            stem += "-only-" + "+".join(v.name for v in args.variants)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        _write_atomically(RESULTS_DIR / f"{stem}.json", json.dumps(report, indent=2) + "\n")
        _write_atomically(RESULTS_DIR / f"{stem}.md", markdown)
        print(f"wrote {RESULTS_DIR / stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
