"""The one benchmark harness: the app every test-client variant serves, checked requests, batch
timing and calibration, interleaved rounds, medians, ratios to the cookie session and to the
peers, goals. variants.py starts the servers and builds the variants; report.py renders.
"""

from __future__ import annotations

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

BASELINE = "cookie"
USER = "alice"
CART = [1, 2, 3]
#: What ``/login`` stores: a logged-in user.
LOGIN: dict[str, Any] = {"user": USER, "cart": CART}
SECRET_KEY = "benchmark-secret-key-not-for-production"
HOST = "127.0.0.1"
#: The tests' server modules (servers.py, redis_servers.py, ...): one harness for both.
TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.append(str(TESTS_DIR))

_T = TypeVar("_T")


class BenchmarkError(Exception):
    """Something answered wrongly; its numbers would be meaningless."""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def create_app(configure: Callable[[Flask], object], login: dict[str, Any] | None = None) -> Flask:
    """The one app every variant serves; ``configure`` installs the session implementation,
    ``login`` is what ``/login`` stores (a user and a cart by default)."""
    app = Flask(__name__)
    app.secret_key = SECRET_KEY
    configure(app)
    counter = itertools.count(1)
    stored = LOGIN if login is None else login

    @app.get("/login")
    def log_in() -> str:
        session.update({k: list(v) if isinstance(v, list) else v for k, v in stored.items()})
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


# -- servers and variants --------------------------------------------------------------------------


@dataclass
class Servers:
    """The servers of one run, or why each is missing; their versions."""

    stack: ExitStack
    tmp: Path
    started: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)

    def start(self, name: str, start: Callable[[], AbstractContextManager[Any]]) -> None:
        """``start()``'s server, stopped by PID when the stack closes; or why it cannot run (the
        tests' fixtures skip a missing binary, or fail it under CI)."""
        import pytest

        try:
            self.started[name] = self.stack.enter_context(start())
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
    #: The servers (names in :class:`Servers`) the variant needs.
    needs: tuple[str, ...] = ()


# -- checked, timed requests ---------------------------------------------------------------------


def request_text(client: FlaskClient, path: str) -> str:
    """``GET path`` through the test client; its body, or :class:`BenchmarkError` unless 200."""
    # buffered=True consumes the body and closes the response, as a WSGI server does, so
    # call_on_close work (Flask-ServerSession's cleanup) runs as it would in production.
    response = client.get(path, buffered=True)
    if response.status_code != 200:
        raise BenchmarkError(f"GET {path} answered {response.status}")
    return response.get_data(as_text=True)


def session_key(client: FlaskClient) -> str:
    """The store key of the session whose cookie ``client`` holds."""
    from flask_serversession.ids import CookieSigner, store_key

    cookie = client.get_cookie("session")
    session_id = None if cookie is None else CookieSigner([SECRET_KEY]).unsign(cookie.value)[0]
    if session_id is None:
        raise BenchmarkError("the client holds no valid session cookie")
    return store_key(session_id)


def time_calls(call: Callable[[], bool], count: int, what: str) -> float:
    """Seconds for ``count`` calls, each checked: ``call()`` says whether its answer is right."""
    gc.collect()  # garbage of the previous batch is not charged to this one
    start = time.perf_counter()
    for _ in range(count):
        if not call():
            raise BenchmarkError(f"{what}: wrong answer during timing")
    return time.perf_counter() - start


def time_requests(client: FlaskClient, path: str, count: int) -> float:
    """Seconds for ``count`` requests, each checked for status 200."""
    get = client.get
    return time_calls(lambda: get(path, buffered=True).status_code == 200, count, f"GET {path}")


def check_session(name: str, get: Callable[[str], str], keys: int | None = None) -> None:
    """Fail unless the variant really keeps the session (``get(path)`` answers a request): a
    broken session must not look fast. ``keys``: how many values the session holds at least."""
    if (got := get("/get")) != USER:
        raise BenchmarkError(f"{name}: /get returned {got!r}, expected {USER!r}")
    if (written := get("/set")) != (read_back := get("/n")):
        raise BenchmarkError(f"{name}: /set wrote {written!r} but /n read back {read_back!r}")
    user, _, n = (both := get("/rw")).partition(" ")
    if user != USER or get("/n") != n:
        raise BenchmarkError(f"{name}: /rw answered {both!r}, /n did not read back its write")
    if get("/none") != "none" or (keys is not None and int(get("/keys")) < keys):
        raise BenchmarkError(f"{name}: /none or /keys answered wrongly")


def calibrated(time_batch: Callable[[int], float], seconds: float) -> int:
    """The batch size that takes about ``seconds``, from a doubling probe."""
    count = 8
    while (elapsed := time_batch(count)) < min(0.05, seconds / 2) and count < 1 << 20:
        count *= 2
    return max(1, math.ceil(count * seconds / elapsed))


def warm_up(call: Callable[[], object], seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        call()


def rotated(items: Sequence[_T], round_index: int) -> list[_T]:
    # Rotating instead of shuffling: every variant takes every position, reproducibly.
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Running:
    """One variant during a run: its app, its logged-in client, its batches and its rates."""

    name: str
    variant: Variant
    built: Built
    endpoints: Sequence[str]
    client: FlaskClient = field(init=False)
    #: Values the session holds after ``/login`` (checked by :meth:`verify`).
    keys: int | None = None
    batch: dict[str, int] = field(default_factory=dict)
    #: Requests per second, per endpoint, round by round.
    rates: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = self.built.app.test_client()
        if request_text(self.client, "/login") != "ok":
            raise BenchmarkError(f"{self.name}: /login failed")
        self.verify()

    def verify(self) -> None:
        check_session(self.name, functools.partial(request_text, self.client), self.keys)
        if self.built.stored_sessions is not None and self.built.stored_sessions() < 1:
            raise BenchmarkError(f"{self.name}: the session is not in the store")

    def calibrate(self, seconds: float, warmup: float) -> None:
        """Warm up each endpoint, then find the batch size that takes about ``seconds``."""
        for endpoint in self.endpoints:
            warm_up(functools.partial(request_text, self.client, "/" + endpoint), warmup)
            timed = functools.partial(time_requests, self.client, "/" + endpoint)
            self.batch[endpoint] = calibrated(timed, seconds)

    def measure(self) -> None:
        for endpoint in self.endpoints:
            elapsed = time_requests(self.client, "/" + endpoint, count := self.batch[endpoint])
            self.rates.setdefault(endpoint, []).append(count / elapsed)


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
        yield runnings


@dataclass
class Probe:
    """One call timed like a variant's request, in the same rounds: µs per call, by round."""

    name: str
    #: One call; returns whether its answer is right.
    call: Callable[[], bool]
    close: Callable[[], None] = lambda: None
    batch: int = 0
    us: list[float] = field(default_factory=list)

    def _time(self, count: int) -> float:
        return time_calls(self.call, count, self.name)

    def calibrate(self, seconds: float, warmup: float) -> None:
        warm_up(self.call, warmup)
        self.batch = calibrated(self._time, seconds)

    def measure(self) -> None:
        self.us.append(self._time(self.batch) / self.batch * 1e6)


def run_rounds(timed: Sequence[Any], rounds: int, label: str = "") -> list[list[str]]:
    """Every item measured once per round, in an order rotated each round: slow drifts of the
    machine hit every variant, not the one that happened to run last. The orders."""
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
    """Medians, ranges and ratios to the cookie session of the same run, per variant and
    endpoint, from the requests per second of every round."""
    base = raw.get(BASELINE)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_endpoint in raw.items():
        summary[name] = {}
        for endpoint, rates in by_endpoint.items():
            median = statistics.median(rates)
            entry: dict[str, Any] = {"median": median, "min": min(rates), "max": max(rates)}
            entry |= dict.fromkeys(("ratio_to_cookie", "extra_us_per_request", "round_ratios"))
            if base is not None:
                base_median = statistics.median(base[endpoint])
                entry["ratio_to_cookie"] = median / base_median
                # The test client's own cost is in every variant and pulls ratios toward 1;
                # the difference in time per request is the session's cost on its own.
                entry["extra_us_per_request"] = 1e6 / median - 1e6 / base_median
                # Same-round ratios show how far noise moved the comparison between rounds.
                entry["round_ratios"] = _ratios(rates, base[endpoint])
            summary[name][endpoint] = entry
    return summary


def _against(
    raw: dict[str, dict[str, list[float]]], ours: str, theirs: str, endpoint: str
) -> tuple[float | None, list[float] | None]:
    """The ratio of two variants' medians for one endpoint, and round by round (or Nones)."""
    a, b = raw.get(ours, {}).get(endpoint), raw.get(theirs, {}).get(endpoint)
    if not a or not b:
        return None, None
    return statistics.median(a) / statistics.median(b), _ratios(a, b)


def compare_to_peers(
    raw: dict[str, dict[str, list[float]]],
    peers: Sequence[tuple[str, str]],
    reference: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """Ours against the peer doing the same job (Flask-Session), endpoint by endpoint."""
    summary = summarize(raw)
    comparisons = []
    for ours, peer in peers:
        for endpoint in raw.get(ours) or raw.get(peer) or {}:
            ratio, round_ratios = _against(raw, ours, peer, endpoint)
            peer_ratio = summary.get(peer, {}).get(endpoint, {}).get("ratio_to_cookie")
            comparisons.append(
                {
                    "ours": ours,
                    "peer": peer,
                    "endpoint": endpoint,
                    "ours_over_peer": ratio,
                    "round_ratios": round_ratios,
                    "peer_ratio_to_cookie": peer_ratio,
                    "reference_peer_ratio_to_cookie": reference.get(peer, {}).get(endpoint),
                }
            )
    return comparisons


def goal_result(
    goal: str, ratio: float | None, target: float, at_most: bool = False, **fields: Any
) -> dict[str, Any]:
    """A goal MET, MISSED or NOT MEASURED (say why in ``not_measured_because``), never hidden:
    ``ratio`` at least (or ``at_most``) ``target``."""
    met = ratio is not None and (ratio <= target if at_most else ratio >= target)
    status = "NOT MEASURED" if ratio is None else "MET" if met else "MISSED"
    return {"goal": goal, "target_ratio": target, "ratio": ratio, "status": status, **fields}


@dataclass(frozen=True)
class Goal:
    variant: str
    endpoint: str
    target: float
    #: The variant whose throughput, measured in the same run, the ratio is taken against.
    against: str = BASELINE


def evaluate_goals(
    goals: Sequence[Goal], raw: dict[str, dict[str, list[float]]], skipped: dict[str, str]
) -> list[dict[str, Any]]:
    results = []
    for goal in goals:
        ratio, round_ratios = _against(raw, goal.variant, goal.against, goal.endpoint)
        missing = [name for name in (goal.variant, goal.against) if name not in raw]
        results.append(
            goal_result(
                f"{goal.variant} /{goal.endpoint} >= {goal.target}x {goal.against}",
                ratio,
                goal.target,
                round_ratios=round_ratios,
                not_measured_because=why_missing(missing, skipped) if ratio is None else None,
            )
        )
    return results


def why_missing(names: Sequence[str], skipped: dict[str, str]) -> str:
    return "; ".join(f"{name}: {skipped.get(name, 'not in this run')}" for name in names)
