"""The one benchmark harness: the app every variant serves, checked and timed calls, interleaved
rounds, medians, ratios to the cookie session and to the peers, goals.
"""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, session
from flask.testing import FlaskClient

BASELINE, USER, HOST = "cookie", "alice", "127.0.0.1"
#: What ``/login`` stores: a logged-in user.
LOGIN: dict[str, Any] = {"user": USER, "cart": [1, 2, 3]}
SECRET_KEY = "benchmark-secret-key-not-for-production"
# The tests' server modules (servers.py, redis_servers.py, ...) start the benchmarks' servers.
if (TESTS_DIR := str(Path(__file__).resolve().parents[1] / "tests")) not in sys.path:
    sys.path.append(TESTS_DIR)
_T = TypeVar("_T")
Starter = Callable[[], AbstractContextManager[tuple[Any, Any]]]


class BenchmarkError(Exception):
    """Something answered wrongly; its numbers would be meaningless."""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def create_app(configure: Callable[[Flask], object], login: dict[str, Any] | None = None) -> Flask:
    """The one app every variant serves; ``configure`` installs its session, ``login`` is stored."""
    app = Flask(__name__)
    app.secret_key = SECRET_KEY
    configure(app)
    counter = itertools.count(1)
    stored = LOGIN if login is None else login

    @app.get("/login")
    def log_in() -> str:
        session.update(copy.deepcopy(stored))
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
        session["n"] = n = next(counter)
        return str(n)

    @app.get("/rw")
    def read_write() -> str:
        user = session.get("user")
        session["n"] = n = next(counter)
        return f"{user} {n}"

    @app.get("/n")
    def read_n() -> str:
        return str(session.get("n"))

    @app.get("/keys")
    def keys() -> str:
        return str(len(session))

    return app


@dataclass
class Servers:
    """The servers of one run, or why each is missing; their versions."""

    stack: ExitStack
    tmp: Path
    started: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)

    def start(self, name: str, start: Starter) -> None:
        """``start()``'s server and version, stopped by PID with the stack; or why it cannot run."""
        import pytest

        try:
            self.started[name], self.versions[name] = self.stack.enter_context(start())
        except (ImportError, RuntimeError, pytest.skip.Exception, pytest.fail.Exception) as exc:
            self.missing[name] = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
            progress(f"{name} unavailable: {self.missing[name]}")

    def require(self, name: str) -> Any:
        if name not in self.started:
            raise BenchmarkError(f"no {name}: {self.missing.get(name, 'not started')}")
        return self.started[name]


@dataclass
class Built:
    """A variant's app, ready to serve, with what is needed to check and release it."""

    app: Flask
    #: Sessions in the variant's store, for the variants whose store the run can look into.
    stored_sessions: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None
    #: Where the variant keeps its sessions: a Redis key prefix, an SQLAlchemy engine.
    redis_prefix: str | None = None
    engine: Any = None


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    #: The app on ``servers``, its ``/login`` storing ``login`` (None: :data:`LOGIN`).
    build: Callable[[Servers, dict[str, Any] | None], Built]

    @property
    def needs(self) -> list[str]:
        """The servers (names in :class:`Servers`) the variant needs: those it is named after."""
        return [s for s in ("redis", "memcached", "postgresql", "mariadb") if self.name.endswith(s)]


def request_text(client: FlaskClient, path: str) -> str:
    """``GET path`` through the test client; its body, or :class:`BenchmarkError` unless 200."""
    # buffered=True consumes the body and closes the response, as a WSGI server does, so
    # call_on_close work (Flask-ServerSession's cleanup) runs as it would in production.
    response = client.get(path, buffered=True)
    if response.status_code != 200:
        raise BenchmarkError(f"GET {path} answered {response.status}")
    return response.get_data(as_text=True)


def check_session(name: str, get: Callable[[str], str], keys: int = 0) -> None:
    """Fail unless the variant keeps the session, with ``keys`` values: broken is not fast."""
    if (got := get("/get")) != USER:
        raise BenchmarkError(f"{name}: /get returned {got!r}, expected {USER!r}")
    if (written := get("/set")) != (read_back := get("/n")):
        raise BenchmarkError(f"{name}: /set wrote {written!r} but /n read back {read_back!r}")
    user, _, n = (both := get("/rw")).partition(" ")
    if user != USER or get("/n") != n:
        raise BenchmarkError(f"{name}: /rw answered {both!r}, /n did not read back its write")
    if get("/none") != "none" or int(get("/keys")) < keys:
        raise BenchmarkError(f"{name}: /none or /keys answered wrongly")


def rotated(items: Sequence[_T], round_index: int) -> list[_T]:
    # Rotating instead of shuffling: every variant takes every position, reproducibly.
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Probe:
    """One call, each answer checked, timed in batches in the rounds: µs per call, by round."""

    name: str
    #: One call; returns whether its answer is right.
    call: Callable[[], bool]
    close: Callable[[], None] = lambda: None
    batch: int = 0
    us: list[float] = field(default_factory=list)

    def time(self, count: int) -> float:
        gc.collect()  # garbage of the previous batch is not charged to this one
        start = time.perf_counter()
        for _ in range(count):
            if not self.call():
                raise BenchmarkError(f"{self.name}: wrong answer during timing")
        return time.perf_counter() - start

    def calibrate(self, seconds: float, warmup: float) -> None:
        """Warm up, then find the batch that takes about ``seconds`` with a doubling probe."""
        deadline = time.perf_counter() + warmup
        while time.perf_counter() < deadline:
            self.call()
        count = 8
        while (elapsed := self.time(count)) < min(0.05, seconds / 2) and count < 1 << 20:
            count *= 2
        self.batch = max(1, math.ceil(count * seconds / elapsed))

    def measure(self) -> None:
        self.us.append(self.time(self.batch) / self.batch * 1e6)


class Running:
    """One variant during a run: its app, its logged-in client, a :class:`Probe` per endpoint."""

    def __init__(self, name: str, variant: Variant, built: Built, endpoints: Sequence[str]) -> None:
        self.name, self.variant, self.built = name, variant, built
        self.client = built.app.test_client()
        self.probes = {e: Probe(f"{name} /{e}", self._answers_ok(f"/{e}")) for e in endpoints}
        if request_text(self.client, "/login") != "ok":
            raise BenchmarkError(f"{name}: /login failed")

    def _answers_ok(self, path: str) -> Callable[[], bool]:
        get = self.client.get
        return lambda: get(path, buffered=True).status_code == 200

    def verify(self, keys: int = 0) -> None:
        check_session(self.name, functools.partial(request_text, self.client), keys)
        if self.built.stored_sessions is not None and self.built.stored_sessions() < 1:
            raise BenchmarkError(f"{self.name}: the session is not in the store")

    @property
    def batch(self) -> dict[str, int]:
        return {endpoint: probe.batch for endpoint, probe in self.probes.items()}

    @property
    def rates(self) -> dict[str, list[float]]:
        """Requests per second, per endpoint, round by round."""
        return {e: [1e6 / us for us in probe.us] for e, probe in self.probes.items()}

    def calibrate(self, seconds: float, warmup: float) -> None:
        for probe in self.probes.values():
            probe.calibrate(seconds, warmup)

    def measure(self) -> None:
        for probe in self.probes.values():
            probe.measure()


@contextmanager
def started(
    variants: Sequence[Variant], servers: Servers, endpoints: Sequence[str]
) -> Iterator[list[Running]]:
    """The variants built, logged in and checked (one failing still closes the others)."""
    with ExitStack() as stack:
        runnings = []
        for variant in variants:
            built = variant.build(servers, None)
            stack.callback(built.close)
            runnings.append(Running(variant.name, variant, built, endpoints))
            runnings[-1].verify()
        yield runnings


def run_rounds(timed: Sequence[Any], rounds: int, label: str = "") -> list[list[str]]:
    """Every item measured once per round, the order rotated each round; the orders."""
    order: list[list[str]] = []
    for round_index in range(rounds):
        order.append([item.name for item in rotated(timed, round_index)])
        for item in rotated(timed, round_index):
            item.measure()
        progress(f"{label}round {round_index + 1}/{rounds} done")
    return order


# -- summaries, peers, goals ---------------------------------------------------------------------


def _ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def summarize(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and endpoint: median, range and ratios to the same run's cookie session."""
    base = raw.get(BASELINE)
    summary: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in raw}
    for name, endpoint, rates in ((n, e, r) for n, by in raw.items() for e, r in by.items()):
        median = statistics.median(rates)
        entry: dict[str, Any] = {"median": median, "min": min(rates), "max": max(rates)}
        entry |= dict.fromkeys(("ratio_to_cookie", "extra_us_per_request", "round_ratios"))
        if base is not None:
            base_median = statistics.median(base[endpoint])
            entry["ratio_to_cookie"] = median / base_median
            # The test client's own cost is in every variant and pulls ratios toward 1; the
            # difference in time per request is the session's cost on its own.
            entry["extra_us_per_request"] = 1e6 / median - 1e6 / base_median
            # Same-round ratios show how far noise moved the comparison between rounds.
            entry["round_ratios"] = _ratios(rates, base[endpoint])
        summary[name][endpoint] = entry
    return summary


def against(
    raw: dict[str, dict[str, list[float]]], ours: str, theirs: str, endpoint: str
) -> tuple[float | None, list[float] | None]:
    """The ratio of two variants' medians for one endpoint, and round by round (or Nones)."""
    a, b = raw.get(ours, {}).get(endpoint), raw.get(theirs, {}).get(endpoint)
    if not a or not b:
        return None, None
    return statistics.median(a) / statistics.median(b), _ratios(a, b)


def compare_to_peers(
    raw: dict[str, dict[str, list[float]]],
    summary: dict[str, dict[str, dict[str, Any]]],
    peers: Sequence[tuple[str, str]],
) -> list[dict[str, Any]]:
    """Ours against another variant (a peer, a floor), endpoint by endpoint."""
    comparisons = []
    for ours, peer in peers:
        for endpoint in raw.get(ours) or raw.get(peer) or {}:
            ratio, round_ratios = against(raw, ours, peer, endpoint)
            peer_ratio = summary.get(peer, {}).get(endpoint, {}).get("ratio_to_cookie")
            comparisons.append(
                {
                    "ours": ours,
                    "peer": peer,
                    "endpoint": endpoint,
                    "ours_over_peer": ratio,
                    "round_ratios": round_ratios,
                    "peer_ratio_to_cookie": peer_ratio,
                }
            )
    return comparisons


def goal_result(
    goal: str, ratio: float | None, target: float, at_most: bool = False, **fields: Any
) -> dict[str, Any]:
    """A goal MET, MISSED or NOT MEASURED: ``ratio`` at least (or ``at_most``) ``target``."""
    met = ratio is not None and (ratio <= target if at_most else ratio >= target)
    status = "NOT MEASURED" if ratio is None else "MET" if met else "MISSED"
    return {"goal": goal, "target_ratio": target, "ratio": ratio, "status": status, **fields}


def why_missing(names: Sequence[str], present: Any, skipped: dict[str, str]) -> str | None:
    """Why the named results are not all ``present`` (None if they are)."""
    missing = [name for name in names if name not in present]
    return "; ".join(f"{n}: {skipped.get(n, 'not in this run')}" for n in missing) or None


def evaluate_goals(
    goals: Sequence[tuple[str, str, float, str]],
    raw: dict[str, dict[str, list[float]]],
    skipped: dict[str, str],
) -> list[dict[str, Any]]:
    """Goals ``(variant, endpoint, target, against)``: req/s at least ``target`` x against's."""
    results = []
    for variant, endpoint, target, other in goals:
        ratio, round_ratios = against(raw, variant, other, endpoint)
        why = why_missing((variant, other), raw, skipped)
        fields: dict[str, Any] = {"round_ratios": round_ratios, "not_measured_because": why}
        floor = variant.replace("ours-", "floor-")  # a read's floor (run.py) against the same
        if endpoint == "get" and (floor_ratio := against(raw, floor, other, endpoint)[0]):
            fields |= {"floor": floor, "floor_ratio": floor_ratio}
        text = f"{variant} /{endpoint} >= {target}x {other}"
        results.append(goal_result(text, ratio, target, **fields))
    return results
