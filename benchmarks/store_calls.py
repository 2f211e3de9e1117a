"""What reaches the store, for run.py: the commands each kind of request sends to Redis (seen by
the server's ``MONITOR``) or to SQL (SQLAlchemy's events), the memory of one stored Redis
session, where the time of ours' SQL reads goes; and their report sections.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import harness as h
from flask.sessions import SecureCookieSession, SessionInterface
from report import Section, columns, rows_of
from sqlalchemy import event
from variants import SQLServer, redis_admin

from flask_serversession import ServerSession
from flask_serversession.stores import Touch

SAMPLE = json.dumps(h.LOGIN)
#: MEMORY USAGE of Flask-Session's Redis session for the sample session, measured earlier.
REFERENCE_FLASK_SESSION_MEMORY = 152
#: The store calls issues 3 and 4 require of ours for each kind of request: untouched 0,
#: read-only 1, assign-only 1, read and write (``/rw``) 2.
EXPECTED_CALLS = {"none": 0, "get": 1, "set": 1, "rw": 2}
#: The app's touch interval (SESSION_TOUCH_INTERVAL's default) and idle timeout.
APP_TOUCH_INTERVAL, IDLE_TIMEOUT = 60.0, 30 * 60.0
Counting = Callable[[], Any]


@contextmanager
def listening(engine: Any, **handlers: Callable[..., None]) -> Iterator[None]:
    """SQLAlchemy's engine events handled while the block runs."""
    for name, handler in handlers.items():
        event.listen(engine, name, handler)
    try:
        yield
    finally:
        for name, handler in handlers.items():
            event.remove(engine, name, handler)


def _count(running: h.Running, counting: Counting) -> dict[str, dict[str, Any]]:
    """For one request of each kind, after one not counted (connections made, scripts loaded),
    what ``counting()`` saw: calls sent (COMMITs apart), and commands run in scripts."""
    counted = {}
    for endpoint in EXPECTED_CALLS:
        h.request_text(running.client, "/" + endpoint)
        with counting() as (sent, in_scripts):
            h.request_text(running.client, "/" + endpoint)
        counted[endpoint] = {
            "calls": sum(n for name, n in sent.items() if name != "COMMIT"),
            "sent": dict(sorted(sent.items())),
            "in_scripts": dict(sorted(in_scripts.items())),
            "expected": EXPECTED_CALLS[endpoint] if running.name.startswith("ours-") else None,
        }
    return counted


def _command_name(line: str) -> str:
    """``EVALSHA 1f0c... 1 key`` -> ``EVALSHA``; ``SCRIPT LOAD ...`` -> ``SCRIPT LOAD``."""
    words = line.split(" ", 2)
    name = words[0].upper()
    if name in ("SCRIPT", "CLIENT", "CONFIG", "MEMORY", "OBJECT") and len(words) > 1:
        name += " " + words[1].upper()
    return name


def _monitored(admin: Any, monitor: Any) -> Counting:
    """Counts of the commands ``MONITOR`` shows between two ``ECHO`` markers: sent by clients
    (a round trip each, as redis-py pipelines nothing here), and run by Lua scripts."""

    def until(marker: str, sent: Counter[str], in_scripts: Counter[str]) -> None:
        admin.echo(marker)
        while True:
            command = monitor.next_command()
            name = _command_name(command["command"])
            if name == "ECHO" and marker in command["command"]:
                return
            if name not in ("INFO", "ECHO"):
                (in_scripts if command["client_type"] == "lua" else sent)[name] += 1

    @contextmanager
    def counting() -> Iterator[tuple[Counter[str], Counter[str]]]:
        until("bench-before", Counter(), Counter())
        sent, in_scripts = Counter[str](), Counter[str]()
        yield sent, in_scripts
        until("bench-after", sent, in_scripts)

    return counting


def _statements(engine: Any) -> Counting:
    """The statements SQLAlchemy sends (by first word: ``WITH`` is our read with its touch)
    and the transactions it commits (a driver's own BEGIN is not seen)."""

    @contextmanager
    def counting() -> Iterator[tuple[Counter[str], Counter[str]]]:
        sent = Counter[str]()

        def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            sent[(statement.split(None, 1) or ["?"])[0].upper()] += 1

        def commit(conn: Any) -> None:
            sent["COMMIT"] += 1

        with listening(engine, before_cursor_execute=before, commit=commit):
            yield sent, Counter()

    return counting


def count_all(runnings: list[h.Running], servers: h.Servers) -> dict[str, Any]:
    """After the timed rounds (MONITOR must not slow them down): what reaches each store, and
    the memory of a Redis session. tests/test_redis.py and test_sql.py pin ours' counts."""
    counted: dict[str, Any] = {"store_calls": {}, "memory": {}}
    for running in runnings:
        if running.built.redis_prefix is not None:
            port = servers.require("redis")
            with redis_admin(port) as admin, redis_admin(port) as watcher:
                with watcher.monitor() as monitor:
                    calls = _count(running, _monitored(admin, monitor))
            counted["store_calls"][running.name] = calls
            counted["memory"][running.name] = measure_memory(running, port)
        if running.built.engine is not None:
            counting = _statements(running.built.engine)
            counted["store_calls"][running.name] = _count(running, counting)
    return counted


def measure_memory(running: h.Running, port: int) -> dict[str, Any]:
    """``MEMORY USAGE`` of the key one fresh login stores, and what the key holds."""
    prefix = f"{running.built.redis_prefix}*"
    with redis_admin(port) as admin:
        before = set(admin.scan_iter(match=prefix, count=1000))
        h.request_text(running.built.app.test_client(), "/login")
        new = set(admin.scan_iter(match=prefix, count=1000)) - before
        if len(new) != 1:
            raise h.BenchmarkError(f"{running.name}: a login stored {len(new)} keys")
        key = new.pop()
        kind = admin.type(key)
        if kind == "hash":
            fields: dict[str, str] = admin.hgetall(key)
            payload = sum(len(name.encode()) + len(text.encode()) for name, text in fields.items())
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


# -- where the time of an SQL read goes ----------------------------------------------------------

#: What each probe part is, in the order of the report.
PROBE_PARTS = {
    "select-1": "`SELECT 1` through the bare driver: the round-trip floor",
    "statement": "the store's read statement (captured from a /get) through the bare driver",
    "store-load": "`store.load(key, touch)` as the app calls it (SQLAlchemy Core + the store)",
}


def build_probes(running: h.Running, server: SQLServer) -> list[h.Probe]:
    """The probes of ``running``'s read: its /get statement is captured and replayed."""
    captured: list[tuple[str, Any]] = []
    with listening(running.built.engine, before_cursor_execute=lambda *a: captured.append(a[2:4])):
        h.request_text(running.client, "/get")
    if len(captured) != 1:
        raise h.BenchmarkError(f"{running.name}: /get ran {len(captured)} statements")
    key, store = h.session_key(running.client), ServerSession.store_of(running.built.app)
    conn = server.connect()
    cursor = conn.cursor()

    def run(sql: str, params: Any = None) -> list[Any]:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]

    def load() -> bool:
        now = time.time()
        return store.load(key, Touch(now, now + IDLE_TIMEOUT, now - APP_TOUCH_INTERVAL)) is not None

    def close() -> None:
        cursor.close()
        conn.close()

    return [
        h.Probe(f"{server.kind}:select-1", lambda: run("SELECT 1") == [(1,)], close),
        # Its touch condition was fixed at capture: replays read and never write.
        h.Probe(f"{server.kind}:statement", lambda: len(run(*captured[0])) == 1),
        h.Probe(f"{server.kind}:store-load", load),
    ]


class InstrumentedGet:
    """Ours' /get with clocks inside: the time of ``store.load`` within each request, and of
    the driver's execute within it (SQLAlchemy's before/after_cursor_execute events). Timed in
    the same rounds as the variants; the clocks add a few µs to the total."""

    def __init__(self, running: h.Running) -> None:
        self.running, self.kind = running, str(running.variant.needs[0])
        self.name = f"{self.kind}:instrumented-get"
        self.rounds: list[dict[str, float]] = []

    def calibrate(self, seconds: float, warmup: float) -> None:
        """The variant's own batch, calibrated before."""

    def measure(self) -> None:
        """µs per request: ``total``, ``store_load`` and ``driver`` (within store_load)."""
        store: Any = ServerSession.store_of(self.running.built.app)
        load, clock = store.load, time.perf_counter
        seconds, started = {"store_load": 0.0, "driver": 0.0}, {}

        def start(part: str) -> None:
            started[part] = clock()

        def stop(part: str) -> None:
            seconds[part] += clock() - started[part]

        def timed_load(key: str, touch: Touch | None = None) -> Any:
            start("store_load")
            try:
                return load(key, touch)
            finally:
                stop("store_load")

        # An attribute of this store object only; the library's code is untouched.
        store.load = timed_load
        before, after = (lambda *a: start("driver")), (lambda *a: stop("driver"))
        count = self.running.batch["get"]
        try:
            with listening(store.engine, before_cursor_execute=before, after_cursor_execute=after):
                elapsed = self.running.probes["get"].time(count)
        finally:
            del store.load
        parts = {name: total / count * 1e6 for name, total in seconds.items()}
        self.rounds.append({"total": elapsed / count * 1e6, **parts})


class _NoSession(SessionInterface):
    def open_session(self, app: Any, request: Any) -> SecureCookieSession:
        return SecureCookieSession()

    def save_session(self, app: Any, session: Any, response: Any) -> None:
        return None


def sql_probes(sql: list[h.Running], servers: h.Servers) -> list[h.Probe]:
    """Ours' SQL reads taken apart; with them, the same app with a session interface that does
    nothing: the test client's and Flask's own cost of a request, without any session."""
    client = h.create_app(lambda app: setattr(app, "session_interface", _NoSession())).test_client()
    found = [h.Probe("no-session:get", lambda: client.get("/get", buffered=True).data == b"None")]
    for running in sql:
        found += build_probes(running, servers.require(running.variant.needs[0]))
    return found if sql else []


def _breakdown(kind: str, probes: dict[str, Any], us: dict[str, float]) -> dict[str, Any]:
    """Where the time of ours' /get on one SQL server goes: µs per request, what each is."""
    rounds, variant = probes[f"{kind}:instrumented-get"], f"ours-{kind}"
    parts = ("total", "store_load", "driver")
    clocked, load, driver = (statistics.median(r[part] for r in rounds) for part in parts)
    floor, cookie, memory, ours = us["no-session"], us["cookie"], us["memory"], us[variant]
    # From the instrumented run, whose parts add up (its total is the timed /get plus the
    # clocks' few µs): what is left once Flask, the test client, Flask-ServerSession's own work
    # (measured with the memory store) and store.load are taken out.
    rows = {
        "/get with no session at all": floor,
        "cookie session /get": cookie,
        "ours with the memory:// store /get": memory,
        f"{variant} /get": ours,
        f"... its session's cost ({variant} - no session)": ours - floor,
        "... the same /get with the clocks (the parts below add up to it minus no session)": (
            clocked
        ),
        "... ... Flask-ServerSession's own work (memory:// - no session)": memory - floor,
        "... ... `store.load` inside the request": load,
        "... ... ... the driver's execute (round trip + server)": driver,
        "... ... ... SQLAlchemy Core + the store's Python": load - driver,
        "... ... the rest: the same Python running slower around a round trip"
        " (clocked - memory:// - store.load)": clocked - memory - load,
        "session cost that 0.5x cookie allows (2 x cookie - no session)": 2 * cookie - floor,
    }
    isolated = {p: probes[f"{kind}:{p}"] for p in PROBE_PARTS if f"{kind}:{p}" in probes}
    return {"variant": variant, "us": rows, "instrumented_rounds": rounds, "isolated_us": isolated}


def summarize_breakdown(results: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Per SQL server, where the time of ours' /get goes (medians over the same rounds)."""
    instrumented = results["instrumented"]
    probes = results["probes_us"] | {f"{k}:instrumented-get": r for k, r in instrumented.items()}
    us = {name: 1e6 / by["get"]["median"] for name, by in summary.items() if "get" in by}
    if not probes.get("no-session:get") or not {h.BASELINE, "ours-memory"} <= set(us):
        return {}
    us |= {"no-session": statistics.median(probes["no-session:get"]), "memory": us["ours-memory"]}
    return {
        kind: _breakdown(kind, probes, us)
        for kind, rounds in instrumented.items()
        if rounds and f"ours-{kind}" in us
    }


# -- report sections -----------------------------------------------------------------------------


def _expected(row: dict[str, Any]) -> str:
    """A count against what an issue requires: ``1 ok``, ``1 **MISSED**``, or ``-``."""
    if row["expected"] is None:
        return "-"
    return f"{row['expected']} {'ok' if row['calls'] == row['expected'] else '**MISSED**'}"


CALL_COLUMNS = columns("variant: {variant} | endpoint: /{endpoint} | store calls: {calls}")
CALL_COLUMNS += [("expected", _expected)]
CALL_COLUMNS += columns("sent: {sent:counts} | in scripts: {in_scripts:counts}")
CALLS_TEXT = (
    "One request of each kind, after one that is not counted (connections made, scripts"
    " loaded; the rate-limited touch is not due). Redis, seen by the server's `MONITOR`:"
    " *store calls* are the commands a client sent (a round trip each), *in scripts* those"
    " its Lua scripts ran. SQL: the statements SQLAlchemy sent (`before_cursor_execute`),"
    " and under *sent* also the COMMITs it ran (a driver's own BEGIN is not seen); `WITH`"
    " is our read with its touch riding along. *expected* is what issues 3 and 4 require of"
    " ours. `/rw` reads, then writes."
)
MEMORY_COLUMNS = columns(
    "variant: {variant} | MEMORY USAGE: {memory_usage_bytes} B | key length: {key_length}"
    " | stored bytes: {stored_bytes} | type, encoding: {type}, {encoding} | stored as: {shape}"
)
MEMORY_TEXT = (
    f"`MEMORY USAGE key SAMPLES 0` of the key one login stores for `{SAMPLE}` (the key's own"
    f" bytes included; Flask-Session measured {REFERENCE_FLASK_SESSION_MEMORY} bytes earlier)."
)
BREAKDOWN_TEXT = (
    "µs per request, medians over the same rounds. *No session* is the same app with a"
    " session interface that does nothing (the test client's and Flask's own cost). The"
    " parts of ours' /get come from a run of /get with clocks around `store.load` and around"
    " the driver's execute (SQLAlchemy's `before/after_cursor_execute`); the isolated calls"
    " are timed in a loop of their own."
)


def breakdown_section(item: dict[str, Any]) -> Section:
    rows = [{"what": what, "us": f"{us:.0f}"} for what, us in item["us"].items()]
    rows[4]["us"] = f"**{rows[4]['us']}**"  # the session's cost
    for part, text in PROBE_PARTS.items():
        if rounds := item["isolated_us"].get(part):
            us = f"{statistics.median(rounds):.0f} ({min(rounds):.0f}-{max(rounds):.0f})"
            rows.append({"what": f"isolated: {text}", "us": us})
    heading = f"Where the time of {item['variant']} /get goes"
    return Section(heading, [BREAKDOWN_TEXT], columns("what: {what} | µs: {us}"), "lr", rows)


def sections(run: dict[str, Any]) -> list[Section]:
    """The store calls, memory and read-breakdown parts of run.py's report."""
    calls, memory = run["store_calls"], run["memory"]
    rows = rows_of(calls, "variant", "endpoint")
    found = [Section("Store calls per request", [CALLS_TEXT], CALL_COLUMNS, "llrrll", rows)]
    rows = rows_of(memory, "variant")
    found += [Section("Memory per stored session", [MEMORY_TEXT], MEMORY_COLUMNS, "lrrrll", rows)]
    found = [part for part, shown in zip(found, (calls, memory), strict=True) if shown]
    return found + [breakdown_section(item) for item in run["read_breakdown"].values()]
