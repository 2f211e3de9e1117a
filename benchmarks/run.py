"""Requests per second through Flask's test client: Flask's cookie session, Flask-ServerSession
(memory, SQLite and Redis stores) and Flask-Session 0.8 (SQLAlchemy on SQLite, and Redis), in one
process. The Redis variants share one redis-server that the run starts, and stops, itself.

Every variant serves the same app; variants are interleaved round by round and each result is
reported as a ratio to the cookie session measured in the same run, so that a noisy, shared
machine moves all numbers together instead of skewing one comparison. For the Redis variants the
run also counts the commands each kind of request sends (``INFO commandstats`` and ``MONITOR``)
and measures the memory one stored session takes (``MEMORY USAGE``). See benchmarks/README.md.

    python benchmarks/run.py                      # the full run (what `make bench` does)
    python benchmarks/run.py --quick              # smoke check: 1 round, tiny batches, no files
    python benchmarks/run.py --rounds 5 --seconds 0.4 --only ours-sqlite,cookie
    python benchmarks/run.py --profile ours-sqlite:get   # cProfile one variant and endpoint
    python benchmarks/run.py --profile ours-redis:get    # starts its own redis-server too
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_servers import HOST, Unavailable, memcached_process, redis_process, stopped_at_exit
from flask import Flask
from flask.testing import FlaskClient
from harness import (
    BASELINE,
    CART,
    USER,
    BenchmarkError,
    calibrate_endpoints,
    calibrated,
    check_session,
    closed_on_error,
    create_app,
    fmt_counts,
    fmt_ratio,
    goal_status,
    load_average,
    logged_in_client,
    package_versions,
    profile_heading,
    profile_report,
    profile_requests,
    reproduce_lines,
    request_text,
    rotated,
    run_main,
    summarize,
    time_requests,
    write_results,
)

ENDPOINTS = ("none", "get", "set")
#: Request kinds whose store commands are counted; ``/rw`` reads, then writes.
ROUND_TRIP_ENDPOINTS = ("none", "get", "set", "rw")
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


# -- the app -------------------------------------------------------------------------------------


# -- variants ------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the variants of one run share: a temporary directory and the run's redis-server."""

    tmp: Path
    redis_port: int | None = None
    #: Why there is no redis-server, when there is none.
    redis_missing: str | None = None
    memcached_port: int | None = None
    #: Why there is no memcached, when there is none.
    memcached_missing: str | None = None

    def require_redis(self) -> int:
        if self.redis_port is None:
            raise BenchmarkError(f"no redis-server: {self.redis_missing or 'not started'}")
        return self.redis_port

    def require_memcached(self) -> int:
        if self.memcached_port is None:
            raise BenchmarkError(f"no memcached: {self.memcached_missing or 'not started'}")
        return self.memcached_port

    def missing(self, variant: Variant) -> str | None:
        """Why ``variant`` cannot run in this context, or ``None`` if it can."""
        if variant.needs_redis and self.redis_port is None:
            return str(self.redis_missing)
        if variant.needs_memcached and self.memcached_port is None:
            return str(self.memcached_missing)
        return None


@dataclass
class Built:
    """A variant's app, ready to serve, with what is needed to check and release it."""

    app: Flask
    #: Sessions in the variant's store (rows of its SQLite table, keys with its Redis prefix),
    #: for the variants that keep sessions where the benchmark can look.
    stored_sessions: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None
    #: The variant's Redis key prefix, for the variants that store sessions in Redis.
    redis_prefix: str | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Context], Built]
    needs_redis: bool = False
    needs_memcached: bool = False


def _count_rows(path: Path, table: str) -> Callable[[], int]:
    def count() -> int:
        # closing(): sqlite3's own context manager only ends the transaction.
        with closing(sqlite3.connect(path)) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0])

    return count


def _redis_admin(port: int) -> Any:
    """A separate redis-py client for the benchmark's own look-ups (never a variant's client)."""
    import redis

    return redis.Redis(host=HOST, port=port, decode_responses=True)


def _count_keys(port: int, prefix: str) -> Callable[[], int]:
    def count() -> int:
        with _redis_admin(port) as admin:
            return sum(1 for _ in admin.scan_iter(match=prefix + "*", count=1000))

    return count


def _build_cookie(ctx: Context) -> Built:
    return Built(create_app(lambda app: None))


def _build_ours(store: str) -> Callable[[Flask], None]:
    from flask_serversession import ServerSession

    def configure(app: Flask) -> None:
        ServerSession(app, store=store)

    return configure


def _build_ours_memory(ctx: Context) -> Built:
    return Built(create_app(_build_ours("memory://")))


def _build_ours_sqlite(ctx: Context) -> Built:
    from flask_serversession import ServerSession

    path = ctx.tmp / "ours.sqlite3"
    # An absolute path gives the four slashes of an absolute SQLAlchemy-style URL.
    app = create_app(_build_ours(f"sqlite:///{path}"))
    return Built(
        app,
        stored_sessions=_count_rows(path, "serversession"),
        close=ServerSession.store_of(app).close,
    )


def _build_ours_redis(ctx: Context) -> Built:
    from flask_serversession import ServerSession

    port = ctx.require_redis()
    app = create_app(_build_ours(f"redis://{HOST}:{port}/0?prefix={OURS_REDIS_PREFIX}"))
    return Built(
        app,
        stored_sessions=_count_keys(port, OURS_REDIS_PREFIX),
        close=ServerSession.store_of(app).close,
        redis_prefix=OURS_REDIS_PREFIX,
    )


def _build_ours_memcached(ctx: Context) -> Built:
    from flask_serversession import ServerSession

    port = ctx.require_memcached()
    app = create_app(_build_ours(f"memcached://{HOST}:{port}?prefix={OURS_REDIS_PREFIX}"))
    return Built(app, close=ServerSession.store_of(app).close)


def _import_flask_session(variant: str) -> Any:
    # Imported here so that runs without Flask-Session's variants do not need it.
    try:
        from flask_session import Session  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BenchmarkError(
            f"{variant} needs {exc.name}: pip install --group bench"
            " (make bench does), or leave the variant out with --only"
        ) from exc
    return Session


def _build_flask_session_sqlalchemy(ctx: Context) -> Built:
    Session = _import_flask_session("flask-session-sqlalchemy")
    try:
        from flask_sqlalchemy import SQLAlchemy
    except ImportError as exc:
        raise BenchmarkError(
            f"flask-session-sqlalchemy needs {exc.name}: pip install --group bench"
            " (make bench does), or leave the variant out with --only"
        ) from exc

    path = ctx.tmp / "flask_session.sqlite3"
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

    return Built(app, stored_sessions=_count_rows(path, "sessions"), close=close)


def _build_flask_session_redis(ctx: Context) -> Built:
    Session = _import_flask_session("flask-session-redis")
    import redis

    port = ctx.require_redis()
    # Flask-Session's documented set-up: a redis.Redis it is given, otherwise its defaults.
    client = redis.Redis(host=HOST, port=port)

    def configure(app: Flask) -> None:
        app.config.update(
            SESSION_TYPE="redis",
            SESSION_REDIS=client,
            SESSION_KEY_PREFIX=FLASK_SESSION_REDIS_PREFIX,
        )
        Session(app)

    return Built(
        create_app(configure),
        stored_sessions=_count_keys(port, FLASK_SESSION_REDIS_PREFIX),
        close=client.close,
        redis_prefix=FLASK_SESSION_REDIS_PREFIX,
    )


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _build_cookie),
    Variant("ours-memory", 'Flask-ServerSession, store="memory://"', _build_ours_memory),
    Variant("ours-sqlite", "Flask-ServerSession, SQLite file store", _build_ours_sqlite),
    Variant(
        "ours-redis",
        f'Flask-ServerSession, store="redis://{HOST}:PORT/0?prefix={OURS_REDIS_PREFIX}"',
        _build_ours_redis,
        needs_redis=True,
    ),
    Variant(
        "ours-memcached",
        f'Flask-ServerSession, store="memcached://{HOST}:PORT"',
        _build_ours_memcached,
        needs_memcached=True,
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
        needs_redis=True,
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
    ctx = Context(Path(os.environ["BENCH_DIR"]), redis_port=int(port) if port else None)
    # Never closed: the worker process ends with it.
    return variant.build(ctx).app


@dataclass(frozen=True)
class Goal:
    variant: str
    endpoint: str
    target: float
    #: The variant whose throughput, measured in the same run, the ratio is taken against.
    against: str = BASELINE


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
#: MEMORY USAGE of Flask-Session's Redis session for the sample session, measured earlier.
REFERENCE_FLASK_SESSION_MEMORY = 152
#: Ours against the peer that does the same job.
PEERS = (("ours-sqlite", "flask-session-sqlalchemy"), ("ours-redis", "flask-session-redis"))
#: Store round trips per request kind that issue 3 requires of the Redis store.
EXPECTED_ROUND_TRIPS = {"ours-redis": {"none": 0, "get": 1, "set": 1, "rw": 2}}


# -- running -------------------------------------------------------------------------------------


@dataclass
class Running:
    """One variant during a run: its app, its logged-in client and its batch sizes."""

    variant: Variant
    built: Built
    client: FlaskClient
    batch: dict[str, int] = field(default_factory=dict)


@dataclass
class RawGet:
    """One redis-py ``GET`` of a small value on the run's redis-server, timed like a variant:
    what a single round trip costs, to set against a cookie-session request."""

    client: Any
    batch: int = 0


def _time_raw_gets(client: Any, count: int) -> float:
    """Seconds for ``count`` redis-py GETs of the run's sample value, each checked."""
    get = client.get
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        if get(RAW_GET_KEY) is None:
            raise BenchmarkError("raw GET: the sample value is gone")
    return time.perf_counter() - start


def verify(running: Running) -> None:
    """Fail unless the variant really keeps the session: a broken session must not look fast."""
    check_session(running.variant.name, running.client, running.built.stored_sessions)


def start(variant: Variant, ctx: Context) -> Running:
    built = variant.build(ctx)
    with closed_on_error(built.close):
        running = Running(variant, built, logged_in_client(built.app, variant.name))
        verify(running)
    return running


def calibrate(running: Running, seconds: float, warmup: float) -> None:
    """Warm up each endpoint, then pick the batch size that takes about ``seconds``."""
    calibrate_endpoints(running.client, ENDPOINTS, running.batch, seconds, warmup)


def calibrate_raw_get(probe: RawGet, seconds: float, warmup: float) -> None:
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        probe.client.get(RAW_GET_KEY)
    probe.batch = calibrated(lambda count: _time_raw_gets(probe.client, count), seconds)


# -- counting what reaches Redis -----------------------------------------------------------------

#: Sent by the benchmark itself between the snapshots; never by a session implementation.
_BOOKKEEPING = {"info", "echo", "monitor"}


def _command_calls(admin: Any) -> dict[str, int]:
    stats: dict[str, dict[str, Any]] = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def _command_name(line: str) -> str:
    """``EVALSHA 1f0c... 1 key`` -> ``EVALSHA``; ``SCRIPT LOAD ...`` -> ``SCRIPT LOAD``."""
    words = line.split(" ", 2)
    name = words[0].upper()
    if name in ("SCRIPT", "CLIENT", "CONFIG", "MEMORY", "OBJECT") and len(words) > 1:
        name += " " + words[1].upper()
    return name


def count_round_trips(running: Running, port: int) -> dict[str, dict[str, Any]]:
    """For one request of each kind, the commands that reached Redis.

    Two server-side views: ``INFO commandstats`` deltas count every command Redis executed,
    those run inside Lua scripts too; ``MONITOR`` tells the commands a client sent (a round
    trip each, as redis-py pipelines nothing here) from those a script ran. The two must agree
    on the total.
    """
    counts: dict[str, dict[str, Any]] = {}
    with _redis_admin(port) as admin, _redis_admin(port) as watcher:
        admin.ping()
        with watcher.monitor() as monitor:

            def seen_until(marker: str) -> tuple[Counter[str], Counter[str]]:
                """Commands MONITOR showed up to ``marker``: sent by clients, run in scripts."""
                admin.echo(marker)
                sent: Counter[str] = Counter()
                in_scripts: Counter[str] = Counter()
                while True:
                    command = monitor.next_command()
                    name = _command_name(command["command"])
                    if name == "ECHO" and marker in command["command"]:
                        return sent, in_scripts
                    if name not in ("INFO", "ECHO"):
                        (in_scripts if command["client_type"] == "lua" else sent)[name] += 1

            for endpoint in ROUND_TRIP_ENDPOINTS:
                path = "/" + endpoint
                request_text(running.client, path)  # connections made, scripts loaded: not counted
                seen_until(f"bench-before-{endpoint}")
                before = _command_calls(admin)
                request_text(running.client, path)
                sent, in_scripts = seen_until(f"bench-after-{endpoint}")
                after = _command_calls(admin)
                executed = {
                    name: calls - before.get(name, 0)
                    for name, calls in sorted(after.items())
                    if calls != before.get(name, 0) and name not in _BOOKKEEPING
                }
                total = sum(executed.values())
                if total != sum(sent.values()) + sum(in_scripts.values()):
                    raise BenchmarkError(
                        f"{running.variant.name} {path}: commandstats counted {executed},"
                        f" MONITOR saw {dict(sent)} sent and {dict(in_scripts)} in scripts"
                    )
                counts[endpoint] = {
                    "round_trips": sum(sent.values()),
                    "sent": dict(sorted(sent.items())),
                    "in_scripts": dict(sorted(in_scripts.items())),
                    "commandstats": executed,
                    "expected": EXPECTED_ROUND_TRIPS.get(running.variant.name, {}).get(endpoint),
                }
    return counts


def measure_memory(running: Running, port: int) -> dict[str, Any]:
    """``MEMORY USAGE`` of the key one fresh login stores (``{"user": "alice", "cart": [1, 2, 3]}``)
    and what the key holds."""
    prefix = running.built.redis_prefix
    assert prefix is not None
    with _redis_admin(port) as admin:
        before = set(admin.scan_iter(match=prefix + "*", count=1000))
        client = running.built.app.test_client()
        request_text(client, "/login")
        new = set(admin.scan_iter(match=prefix + "*", count=1000)) - before
        if len(new) != 1:
            raise BenchmarkError(f"{running.variant.name}: a login stored {len(new)} keys")
        key = new.pop()
        kind = admin.type(key)
        if kind == "hash":
            fields: dict[str, str] = admin.hgetall(key)
            payload = sum(
                len(name.encode()) + len(value.encode()) for name, value in fields.items()
            )
            shape = f"hash of {len(fields)} fields: " + ", ".join(sorted(fields))
        else:
            payload = int(admin.strlen(key))
            shape = f"{kind} of {payload} bytes"
        return {
            # SAMPLES 0: every element counted, not an estimate.
            "memory_usage_bytes": int(admin.memory_usage(key, samples=0)),
            "key_length": len(key.encode()),
            "stored_bytes": payload,
            "type": kind,
            "encoding": admin.object("encoding", key),
            "shape": shape,
            "ttl_seconds": int(admin.ttl(key)),
        }


def redis_version(port: int) -> str:
    with _redis_admin(port) as admin:
        return str(admin.info("server")["redis_version"])


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Results:
    raw: dict[str, dict[str, list[float]]]
    order: list[list[str]]
    batch: dict[str, dict[str, int]]
    #: redis-py GETs per second, round by round (empty without a redis-server).
    raw_get: list[float] = field(default_factory=list)
    raw_get_batch: int | None = None
    round_trips: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)


def run(
    variants: Sequence[Variant], rounds: int, seconds: float, warmup: float, ctx: Context
) -> Results:
    runnings: list[Running] = []
    probe: RawGet | None = None
    try:
        # Appended one by one so that a variant failing to start still closes the others.
        for variant in variants:
            runnings.append(start(variant, ctx))
        for running in runnings:
            calibrate(running, seconds, warmup)
        if ctx.redis_port is not None:
            import redis

            # redis-py's defaults, as Flask-Session's client; a value of a session's size.
            probe = RawGet(redis.Redis(host=HOST, port=ctx.redis_port))
            probe.client.set(RAW_GET_KEY, json.dumps({"user": USER, "cart": CART}))
            calibrate_raw_get(probe, seconds, warmup)
        raw: dict[str, dict[str, list[float]]] = {
            r.variant.name: {e: [] for e in ENDPOINTS} for r in runnings
        }
        raw_get: list[float] = []
        order: list[list[str]] = []
        timed: list[Running | RawGet] = [*runnings, *([probe] if probe else [])]
        for round_index in range(rounds):
            this_round = rotated(timed, round_index)
            order.append([RAW_GET if isinstance(t, RawGet) else t.variant.name for t in this_round])
            for item in this_round:
                if isinstance(item, RawGet):
                    raw_get.append(item.batch / _time_raw_gets(item.client, item.batch))
                    continue
                for endpoint in ENDPOINTS:
                    count = item.batch[endpoint]
                    elapsed = time_requests(item.client, "/" + endpoint, count)
                    raw[item.variant.name][endpoint].append(count / elapsed)
            print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
        # Timing must not have broken anything either.
        for running in runnings:
            verify(running)
        results = Results(
            raw,
            order,
            {r.variant.name: dict(r.batch) for r in runnings},
            raw_get=raw_get,
            raw_get_batch=probe.batch if probe else None,
        )
        # Counted after timing, so that MONITOR (which slows Redis down) never overlaps it.
        for running in runnings:
            if running.variant.needs_redis:
                port = ctx.require_redis()
                results.round_trips[running.variant.name] = count_round_trips(running, port)
                results.memory[running.variant.name] = measure_memory(running, port)
        return results
    finally:
        for running in runnings:
            running.built.close()
        if probe is not None:
            probe.client.close()


@contextmanager
def redis_for(variants: Sequence[Variant], tmp: Path) -> Iterator[Context]:
    """The run's context; with a redis-server on 127.0.0.1 if a variant needs one and it can
    run (otherwise ``redis_missing`` says why). The server is stopped by PID at the end."""
    ctx = Context(tmp)
    with ExitStack() as stack:
        if any(variant.needs_redis for variant in variants):
            try:
                server = redis_process(tmp / "redis")
            except Unavailable as exc:
                ctx.redis_missing = str(exc)
            else:
                stack.enter_context(stopped_at_exit(server))
                ctx.redis_port = server.port
        if any(variant.needs_memcached for variant in variants):
            try:
                cache = memcached_process(tmp / "memcached")
            except Unavailable as exc:
                ctx.memcached_missing = str(exc)
            else:
                stack.enter_context(stopped_at_exit(cache))
                ctx.memcached_port = cache.port
        yield ctx


# -- reporting -----------------------------------------------------------------------------------


def summarize_raw_get(
    raw_get: list[float], raw: dict[str, dict[str, list[float]]]
) -> dict[str, Any] | None:
    """One GET's cost in µs, and against the time of one cookie-session request per endpoint."""
    if not raw_get:
        return None
    us = [1e6 / rate for rate in raw_get]
    result: dict[str, Any] = {
        "median_us": statistics.median(us),
        "min_us": min(us),
        "max_us": max(us),
        "against_cookie": {},
    }
    base = raw.get(BASELINE)
    if base is not None:
        for endpoint in ENDPOINTS:
            cookie_us = [1e6 / rate for rate in base[endpoint]]
            result["against_cookie"][endpoint] = {
                "cookie_us_per_request": statistics.median(cookie_us),
                "ratio": statistics.median(us) / statistics.median(cookie_us),
                "round_ratios": [g / c for g, c in zip(us, cookie_us, strict=True)],
            }
    return result


def _goal_text(goal: Goal) -> str:
    return f"{goal.variant} /{goal.endpoint} >= {goal.target}x {goal.against}"


def evaluate_goals(
    summary: dict[str, dict[str, dict[str, Any]]],
    memory: dict[str, dict[str, Any]],
    skipped: dict[str, str],
) -> list[dict[str, Any]]:
    goals = []
    for goal in GOALS:
        ours = summary.get(goal.variant, {}).get(goal.endpoint)
        theirs = summary.get(goal.against, {}).get(goal.endpoint)
        ratio = None
        if ours is not None and theirs is not None:
            ratio = ours["median"] / theirs["median"]
        missing = [name for name in (goal.variant, goal.against) if name not in summary]
        goals.append(
            {
                "goal": _goal_text(goal),
                "variant": goal.variant,
                "endpoint": goal.endpoint,
                "against": goal.against,
                "target_ratio": goal.target,
                "ratio": ratio,
                "status": goal_status(ratio is not None and ratio >= goal.target, ratio),
                "not_measured_because": _why_missing(missing, skipped) if ratio is None else None,
            }
        )
    ours_memory = memory.get("ours-redis", {}).get("memory_usage_bytes")
    theirs_memory = memory.get("flask-session-redis", {}).get("memory_usage_bytes")
    memory_ratio = None if not (ours_memory and theirs_memory) else ours_memory / theirs_memory
    missing = [n for n in ("ours-redis", "flask-session-redis") if n not in memory]
    goals.append(
        {
            "goal": f"ours-redis MEMORY USAGE <= {MEMORY_GOAL}x flask-session-redis",
            "variant": "ours-redis",
            "endpoint": None,
            "against": "flask-session-redis",
            "target_ratio": MEMORY_GOAL,
            "ratio": memory_ratio,
            "status": goal_status(
                memory_ratio is not None and memory_ratio <= MEMORY_GOAL, memory_ratio
            ),
            "not_measured_because": _why_missing(missing, skipped)
            if memory_ratio is None
            else None,
        }
    )
    return goals


def _why_missing(names: list[str], skipped: dict[str, str]) -> str:
    return "; ".join(f"{name}: {skipped.get(name, 'not in this run')}" for name in names)


def compare_to_peers(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    comparisons = []
    for ours_name, theirs_name in PEERS:
        ours = summary.get(ours_name)
        theirs = summary.get(theirs_name)
        if ours is None and theirs is None:
            continue
        for endpoint in ENDPOINTS:
            speedup = None
            theirs_to_cookie = None
            if ours is not None and theirs is not None:
                speedup = ours[endpoint]["median"] / theirs[endpoint]["median"]
            if theirs is not None:
                theirs_to_cookie = theirs[endpoint]["ratio_to_cookie"]
            comparisons.append(
                {
                    "ours": ours_name,
                    "peer": theirs_name,
                    "endpoint": endpoint,
                    "ours_over_peer": speedup,
                    "peer_ratio_to_cookie": theirs_to_cookie,
                    "reference_peer_ratio_to_cookie": REFERENCE[theirs_name].get(endpoint),
                }
            )
    return comparisons


def machine_info(redis_port: int | None = None) -> dict[str, Any]:
    packages = package_versions(PACKAGES)
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": redis_version(redis_port) if redis_port is not None else None,
        "packages": packages,
    }


def _us(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.0f}"


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    redis_text = (
        f", redis-server {machine['redis_server']}, redis-py {packages['redis']}"
        if machine.get("redis_server")
        else ""
    )
    lines = [
        f"# Flask test-client benchmark, {report['date']}",
        "",
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs,"
        f" SQLite {machine['sqlite']}{redis_text}; Flask {packages['flask']},"
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
                f" | {entry['max']:,.0f} | {fmt_ratio(entry['ratio_to_cookie'])} | {spread}"
                f" | {_us(entry['extra_us_per_request'])} |"
            )
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        for name, reason in report["skipped"].items():
            lines.append(f"- **{name}** skipped: {reason}")
    lines += ["", "## Goals", ""]
    for goal in report["goals"]:
        measured = f"measured {fmt_ratio(goal['ratio'])}"
        if goal["not_measured_because"]:
            measured += f"; {goal['not_measured_because']}"
        lines.append(f"- **{goal['status']}**: {goal['goal']} ({measured})")

    raw_get = report.get("raw_redis_get")
    if raw_get is not None:
        lines += [
            "",
            "## One raw redis-py GET against one cookie-session request",
            "",
            f"A redis-py `GET` of a {len(json.dumps({'user': USER, 'cart': CART}))}-byte value"
            f" on the same redis-server, timed in the same rounds: median"
            f" {raw_get['median_us']:.1f} µs (min {raw_get['min_us']:.1f}, max"
            f" {raw_get['max_us']:.1f}).",
            "",
        ]
        against = raw_get["against_cookie"]
        if against:
            lines += [
                "| cookie endpoint | cookie µs/request | GET / cookie request | per round |",
                "|---|---:|---:|---:|",
            ]
            for endpoint, item in against.items():
                rr = item["round_ratios"]
                lines.append(
                    f"| /{endpoint} | {item['cookie_us_per_request']:.1f} | {item['ratio']:.2f}"
                    f" | {min(rr):.2f}-{max(rr):.2f} |"
                )

    if report["comparisons"]:
        lines += ["", "## Ours against Flask-Session", ""]
        lines += [
            "| ours | Flask-Session | endpoint | ours / Flask-Session | Flask-Session vs cookie"
            " | earlier reference |",
            "|---|---|---|---:|---:|---:|",
        ]
        for item in report["comparisons"]:
            reference = item["reference_peer_ratio_to_cookie"]
            lines.append(
                f"| {item['ours']} | {item['peer']} | /{item['endpoint']}"
                f" | {fmt_ratio(item['ours_over_peer'])}"
                f" | {fmt_ratio(item['peer_ratio_to_cookie'])}"
                f" | {fmt_ratio(reference)} |"
            )

    if report["round_trips"]:
        lines += [
            "",
            "## Redis commands per request",
            "",
            "One request of each kind, counted on the server: *round trips* are the commands a"
            " client sent (`MONITOR`, outside Lua), *in scripts* the commands Lua scripts ran,"
            " *commandstats* the `INFO commandstats` delta (every executed command, those in"
            " scripts too; the two views agree on the total). `/rw` reads, then writes."
            " *expected* is what issue 3 requires of ours.",
            "",
            "| variant | endpoint | round trips | expected | sent | in scripts | commandstats |",
            "|---|---|---:|---:|---|---|---|",
        ]
        for name, by_endpoint in report["round_trips"].items():
            for endpoint, item in by_endpoint.items():
                expected = item["expected"]
                expected_text = "-" if expected is None else str(expected)
                if expected is not None:
                    expected_text += " ok" if item["round_trips"] == expected else " **MISSED**"
                lines.append(
                    f"| {name} | /{endpoint} | {item['round_trips']} | {expected_text}"
                    f" | {fmt_counts(item['sent'])} | {fmt_counts(item['in_scripts'])}"
                    f" | {fmt_counts(item['commandstats'])} |"
                )

    if report["memory"]:
        lines += [
            "",
            "## Memory per stored session",
            "",
            "`MEMORY USAGE key SAMPLES 0` of the key one login stores for"
            f" `{json.dumps({'user': USER, 'cart': CART})}` (the key's own bytes included;"
            f" Flask-Session measured {REFERENCE_FLASK_SESSION_MEMORY} bytes earlier).",
            "",
            "| variant | MEMORY USAGE | key length | stored bytes | type, encoding | stored as |",
            "|---|---:|---:|---:|---|---|",
        ]
        for name, item in report["memory"].items():
            lines.append(
                f"| {name} | {item['memory_usage_bytes']} B | {item['key_length']}"
                f" | {item['stored_bytes']} | {item['type']}, {item['encoding']}"
                f" | {item['shape']} |"
            )

    lines += reproduce_lines(report["command"], "python benchmarks/run.py")
    return "\n".join(lines)


# -- profiling -----------------------------------------------------------------------------------


def profile(variant: Variant, endpoint: str, seconds: float, warmup: float, top: int) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        redis_for([variant], Path(tmp)) as ctx,
    ):
        reason = ctx.missing(variant)
        if reason is not None:
            raise BenchmarkError(f"{variant.name} skipped: {reason}")
        running = start(variant, ctx)
        try:
            calibrate(running, seconds, warmup)
            count = running.batch[endpoint]
            profiler, elapsed, plain = profile_requests(running.client, endpoint, count)
        finally:
            running.built.close()
    # The library's own functions first: in a full listing they drown in Werkzeug's test client.
    sections = [("Flask-ServerSession functions", "flask_serversession")]
    if variant.needs_redis:
        sections.append(("redis-py functions", "site-packages/redis/"))
    heading = profile_heading(count, variant.name, endpoint, elapsed, plain)
    return profile_report(profiler, heading, sections, top)


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
    load_before = load_average()
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        with redis_for(args.variants, Path(tmp)) as ctx:
            skipped = {
                v.name: reason for v in args.variants if (reason := ctx.missing(v)) is not None
            }
            if ctx.redis_port is None and any(v.needs_redis for v in args.variants):
                skipped[RAW_GET] = str(ctx.redis_missing)
            for name, reason in skipped.items():
                print(f"{name} skipped: {reason}", file=sys.stderr)
            variants = [v for v in args.variants if v.name not in skipped]
            results = run(variants, args.rounds, args.seconds, args.warmup, ctx)
            machine = machine_info(ctx.redis_port)
    duration = time.perf_counter() - clock

    summary = summarize(results.raw)
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    report: dict[str, Any] = {
        "benchmark": "testclient",
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": {v.name: v.description for v in variants},
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results.batch,
            "raw_get_per_measurement": results.raw_get_batch,
        },
        "skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "duration_seconds": round(duration, 1),
        "order": results.order,
        "raw_requests_per_second": results.raw,
        "raw_redis_gets_per_second": results.raw_get,
        "summary": summary,
        "raw_redis_get": summarize_raw_get(results.raw_get, results.raw),
        "goals": evaluate_goals(summary, results.memory, skipped),
        "comparisons": compare_to_peers(summary),
        "round_trips": results.round_trips,
        "memory": results.memory,
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
        write_results(stem, report, markdown)
    return 0


if __name__ == "__main__":
    run_main(main)
