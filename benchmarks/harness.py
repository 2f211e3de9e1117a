"""Measurement and report helpers that run.py, sql_bench.py and http_bench.py share.

The app every test-client variant serves, the checked request, batch timing and calibration,
interleaving, medians and ratios to the cookie session, the small Markdown formatters, machine
and package information, atomic result files and the command-line exit handling.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import io
import itertools
import json
import math
import os
import pstats
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from flask import Flask, session
from flask.testing import FlaskClient

BASELINE = "cookie"
USER = "alice"
CART = [1, 2, 3]
SECRET_KEY = "benchmark-secret-key-not-for-production"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_T = TypeVar("_T")


class BenchmarkError(Exception):
    """Something answered wrongly; its numbers would be meaningless."""


# -- the app -------------------------------------------------------------------------------------


def create_app(configure: Callable[[Flask], None]) -> Flask:
    """The one app every variant serves; ``configure`` installs the session implementation."""
    app = Flask(__name__)
    app.secret_key = SECRET_KEY
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

    @app.get("/rw")
    def read_write() -> str:
        # Reads, then writes: the round-trip count of a request that does both.
        user = session.get("user")
        n = next(counter)
        session["n"] = n
        return f"{user} {n}"

    @app.get("/n")
    def read_n() -> str:
        return str(session.get("n"))

    return app


# -- requests, checks and timing -----------------------------------------------------------------


def request_text(client: FlaskClient, path: str) -> str:
    """``GET path`` through the test client; its body, or :class:`BenchmarkError` unless 200."""
    # buffered=True consumes the body and closes the response, as a WSGI server does, so
    # call_on_close work (Flask-ServerSession's cleanup) runs as it would in production.
    response = client.get(path, buffered=True)
    if response.status_code != 200:
        raise BenchmarkError(f"GET {path} answered {response.status}")
    return response.get_data(as_text=True)


def time_requests(client: FlaskClient, path: str, count: int) -> float:
    """Seconds for ``count`` requests, each checked for status 200."""
    get = client.get
    # Collect garbage left by the previous batch now, so it is not charged to this variant.
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        if get(path, buffered=True).status_code != 200:
            raise BenchmarkError(f"GET {path} failed during timing")
    return time.perf_counter() - start


def logged_in_client(app: Flask, name: str) -> FlaskClient:
    """A test client of ``app`` whose session holds the benchmark's user."""
    client = app.test_client()
    if request_text(client, "/login") != "ok":
        raise BenchmarkError(f"{name}: /login failed")
    return client


def check_session(
    name: str,
    client: FlaskClient,
    stored_sessions: Callable[[], int] | None,
    where: str = "the store",
) -> None:
    """Fail unless the variant really keeps the session: a broken session must not look fast."""
    got = request_text(client, "/get")
    if got != USER:
        raise BenchmarkError(f"{name}: /get returned {got!r}, expected {USER!r}")
    written = request_text(client, "/set")
    read_back = request_text(client, "/n")
    if read_back != written:
        raise BenchmarkError(f"{name}: /set wrote {written!r} but /n read back {read_back!r}")
    both = request_text(client, "/rw")
    user, _, n = both.partition(" ")
    if user != USER or request_text(client, "/n") != n:
        raise BenchmarkError(f"{name}: /rw answered {both!r}, /n did not read back its write")
    if request_text(client, "/none") != "none":
        raise BenchmarkError(f"{name}: /none answered wrongly")
    if stored_sessions is not None and stored_sessions() < 1:
        raise BenchmarkError(f"{name}: the session is not in {where}")


@contextmanager
def closed_on_error(close: Callable[[], None]) -> Iterator[None]:
    """Run ``close`` if the block fails (and re-raise); leave it open if the block succeeds."""
    try:
        yield
    except BaseException:
        close()
        raise


def calibrated(time_batch: Callable[[int], float], seconds: float) -> int:
    """The batch size that takes about ``seconds``, from a doubling probe."""
    count = 8
    while True:
        elapsed = time_batch(count)
        if elapsed >= min(0.05, seconds / 2) or count >= 1 << 20:
            break
        count *= 2
    return max(1, math.ceil(count * seconds / elapsed))


def calibrate_endpoints(
    client: FlaskClient,
    endpoints: Iterable[str],
    batch: dict[str, int],
    seconds: float,
    warmup: float,
) -> None:
    """Warm up each endpoint, then store in ``batch`` the size that takes about ``seconds``."""
    for endpoint in endpoints:
        path = "/" + endpoint
        deadline = time.perf_counter() + warmup
        while time.perf_counter() < deadline:
            request_text(client, path)
        batch[endpoint] = calibrated(functools.partial(time_requests, client, path), seconds)


def rotated(items: Sequence[_T], round_index: int) -> list[_T]:
    # Rotating instead of shuffling: every variant takes every position, reproducibly.
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def profile_requests(
    client: FlaskClient, endpoint: str, count: int
) -> tuple[cProfile.Profile, float, float]:
    """``count`` requests to ``/endpoint`` under cProfile: the profile, and the seconds they
    took with and without the profiler."""
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = time_requests(client, "/" + endpoint, count)
    profiler.disable()
    # The same batch again without the profiler: its overhead is not the library's.
    plain = time_requests(client, "/" + endpoint, count)
    return profiler, elapsed, plain


def profile_report(
    profiler: cProfile.Profile,
    heading: str,
    sections: Sequence[tuple[str, str]],
    top: int,
) -> str:
    """The profile as text: ``heading``, then the ``(title, pattern)`` sections, then all
    functions by own and by cumulative time."""
    out = io.StringIO()
    out.write(heading)
    stats = pstats.Stats(profiler, stream=out)
    for title, pattern in sections:
        out.write(f"\n== {title}, by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(pattern, top)
    out.write("\n== All functions, by own time ==\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    out.write("\n== All functions, by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def profile_heading(count: int, name: str, endpoint: str, elapsed: float, plain: float) -> str:
    return (
        f"cProfile of {count} requests to {name} /{endpoint}: {elapsed / count * 1e6:.1f}"
        f" µs/request under the profiler, {plain / count * 1e6:.1f} µs/request without\n"
    )


# -- reporting -----------------------------------------------------------------------------------


def summarize(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians, ranges and ratios to the cookie session of the same run, per variant and
    endpoint, from the requests per second of every round."""
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


def goal_status(met: bool, measured: float | None) -> str:
    if measured is None:
        return "NOT MEASURED"
    return "MET" if met else "MISSED"


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def reproduce_lines(command: str, make_bench_command: str | None = None) -> list[str]:
    """The report's closing "Reproduce" section; ``make bench`` comes first when ``command`` is
    ``make_bench_command``, the command that ``make bench`` runs."""
    make = ["make bench"] if command == make_bench_command else []
    return ["", "## Reproduce", "", "```sh", *make, command, "```", ""]


def write_atomically(path: Path, text: str) -> None:
    # A run interrupted while writing must not leave a half file that looks like a result.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_results(stem: str, report: dict[str, Any], markdown: str) -> None:
    """``results/<stem>.json`` and ``.md``, each written atomically."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    write_atomically(RESULTS_DIR / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    write_atomically(RESULTS_DIR / f"{stem}.md", markdown)
    print(f"wrote {RESULTS_DIR / stem}.json and .md", file=sys.stderr)


# -- command line --------------------------------------------------------------------------------


def exit_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C does: through every ``finally``, so the servers the run
    started are stopped by PID, not left behind."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def run_main(main: Callable[[Sequence[str]], int], failed: str = "benchmark failed") -> None:
    """``main(sys.argv[1:])`` as a script: SIGTERM like Ctrl-C, and one line on failure."""
    exit_on_sigterm()
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchmarkError as exc:
        sys.exit(f"{failed}: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted (the servers this run started are stopped)")
