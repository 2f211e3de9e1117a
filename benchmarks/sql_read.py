"""Where the time of ours' /get on PostgreSQL and MariaDB goes: probes timed in the same rounds
as the variants (no session at all, ours on memory://, `SELECT 1`, the store's own statement,
``store.load``) and ours' /get with clocks around ``store.load`` and the driver's execute.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from flask import Flask
from harness import (
    BASELINE,
    BenchmarkError,
    Probe,
    Running,
    create_app,
    request_text,
    session_key,
    time_requests,
)
from report import Section
from scaling import IDLE_TIMEOUT
from sql_server import MARIADB, OURS_MARIADB, OURS_PG, PG, SQLServer, sql_store_of
from sqlalchemy import event

from flask_serversession.stores import Record as StoredRecord
from flask_serversession.stores import Touch

#: The app's touch interval (SESSION_TOUCH_INTERVAL's default).
APP_TOUCH_INTERVAL = 60.0
# -- where the time of a read goes ---------------------------------------------------------------

#: What each probe part is, in the order of the report.
PROBE_PARTS = {
    "select-1": "`SELECT 1` through the bare driver: the round-trip floor",
    "statement": "the store's read statement (captured from a /get) through the bare driver",
    "store-load": "`store.load(key, touch)` as the app calls it (SQLAlchemy Core + the store)",
}


def _capture_get(running: Running) -> tuple[str, Any]:
    """The one statement ours' /get sends, with its parameters."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        captured.append((statement, parameters))

    event.listen(running.built.engine, "before_cursor_execute", capture)
    try:
        request_text(running.client, "/get")
    finally:
        event.remove(running.built.engine, "before_cursor_execute", capture)
    if len(captured) != 1:
        raise BenchmarkError(f"{running.name}: /get ran {len(captured)} statements")
    return captured[0]


def build_probes(running: Running, server: SQLServer) -> list[Probe]:
    """The probes of ``running``'s read: its /get statement is captured and replayed."""
    statement, parameters = _capture_get(running)
    key = session_key(running.client)
    store = sql_store_of(running.built.app)
    conn = server.connect()
    cursor = conn.cursor()

    def select_one() -> bool:
        cursor.execute("SELECT 1")
        return [tuple(row) for row in cursor.fetchall()] == [(1,)]

    def replay() -> bool:
        # Its touch condition was fixed at capture: replays read and never write.
        cursor.execute(statement, parameters)
        return len(cursor.fetchall()) == 1

    def load() -> bool:
        now = time.time()
        return store.load(key, Touch(now, now + IDLE_TIMEOUT, now - APP_TOUCH_INTERVAL)) is not None

    def close() -> None:
        cursor.close()
        conn.close()

    return [
        Probe(f"{server.kind}:select-1", select_one, close),
        Probe(f"{server.kind}:statement", replay),
        Probe(f"{server.kind}:store-load", load),
    ]


class InstrumentedGet:
    """Ours' /get with clocks inside: the time of ``store.load`` within each request, and of
    the driver's execute within it (SQLAlchemy's before/after_cursor_execute events). Timed in
    the same rounds as the variants; the clocks add a few µs to the total."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.kind = str(running.variant.needs[0])
        self.name = f"{self.kind}:instrumented-get"
        self.batch = 0
        self.rounds: list[dict[str, float]] = []
        self.load_seconds = self.driver_seconds = self._driver_started = 0.0

    def _before(self, *args: Any) -> None:
        self._driver_started = time.perf_counter()

    def _after(self, *args: Any) -> None:
        self.driver_seconds += time.perf_counter() - self._driver_started

    def calibrate(self, seconds: float, warmup: float) -> None:
        self.batch = self.running.batch["get"]

    def measure(self) -> None:
        """µs per request: ``total``, ``store_load`` and ``driver`` (within store_load)."""
        store = sql_store_of(self.running.built.app)
        original = store.load
        clock = time.perf_counter

        def timed_load(key: str, touch: Touch | None = None) -> StoredRecord | None:
            started = clock()
            try:
                return original(key, touch)
            finally:
                self.load_seconds += clock() - started

        self.load_seconds = self.driver_seconds = 0.0
        # An attribute of this store object only; the library's code is untouched.
        setattr(store, "load", timed_load)  # noqa: B010
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)
        try:
            elapsed = time_requests(self.running.client, "/get", self.batch)
        finally:
            event.remove(store.engine, "after_cursor_execute", self._after)
            event.remove(store.engine, "before_cursor_execute", self._before)
            delattr(store, "load")
        count = self.batch
        self.rounds.append(
            {
                "total": elapsed / count * 1e6,
                "store_load": self.load_seconds / count * 1e6,
                "driver": self.driver_seconds / count * 1e6,
            }
        )


def no_session_probe() -> Probe:
    """The same app with a session interface that does nothing: the test client's and Flask's
    own cost of a request, without any session."""
    from flask.sessions import SecureCookieSession, SessionInterface

    class NoSession(SessionInterface):
        def open_session(self, app: Flask, request: Any) -> SecureCookieSession:
            return SecureCookieSession()

        def save_session(self, app: Flask, session: Any, response: Any) -> None:
            return None

    def configure(app: Flask) -> None:
        app.session_interface = NoSession()

    client = create_app(configure).test_client()
    return Probe("no-session:get", lambda: client.get("/get", buffered=True).data == b"None")


def summarize_breakdown(
    probes: dict[str, list[float]],
    instrumented: dict[str, list[dict[str, float]]],
    summary: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Per server, where the time of ours' /get goes, in µs per request (medians over rounds).

    ``session_cost`` is ours' /get minus the same request without any session; the goal of
    0.5x the cookie session allows ``session_budget`` = 2 x cookie /get - no-session /get."""
    if not probes.get("no-session:get") or not {BASELINE, "ours-memory"} <= set(summary):
        return {}
    floor = statistics.median(probes["no-session:get"])
    # The ours-memory variant, timed in the same rounds.
    memory = 1e6 / summary["ours-memory"]["get"]["median"]
    cookie = 1e6 / summary[BASELINE]["get"]["median"]
    breakdown: dict[str, dict[str, Any]] = {}
    for kind, variant in ((PG, OURS_PG), (MARIADB, OURS_MARIADB)):
        rounds = instrumented.get(kind)
        if not rounds or variant not in summary:
            continue
        ours = 1e6 / summary[variant]["get"]["median"]
        load, driver, clocked = (
            statistics.median(r[part] for r in rounds) for part in ("store_load", "driver", "total")
        )
        isolated = {p: probes[f"{kind}:{p}"] for p in PROBE_PARTS if f"{kind}:{p}" in probes}
        breakdown[kind] = {
            "variant": variant,
            "no_session_get_us": floor,
            "cookie_get_us": cookie,
            "cookie_session_cost_us": cookie - floor,
            "ours_get_us": ours,
            "ours_session_cost_us": ours - floor,
            "session_budget_us": 2 * cookie - floor,
            "ours_memory_get_us": memory,
            "serversession_own_work_us": memory - floor,
            "instrumented_total_us": clocked,
            "store_load_in_request_us": load,
            "driver_execute_in_request_us": driver,
            "sqlalchemy_and_store_us": load - driver,
            # From the instrumented run, whose parts add up (its total is the timed /get plus
            # the clocks' few µs): what is left once Flask, the test client, Flask-ServerSession's
            # own work (measured with the memory store) and store.load are taken out.
            "rest_us": clocked - memory - load,
            "instrumented_rounds": rounds,
            "isolated_us": {part: statistics.median(us) for part, us in isolated.items()},
            "isolated_rounds_us": isolated,
        }
    return breakdown


#: The rows of the breakdown table: what, and its µs (formats applied to the breakdown).
BREAKDOWN = (
    ("/get with no session at all", "{no_session_get_us:.0f}"),
    ("cookie session /get", "{cookie_get_us:.0f}"),
    ("ours with the memory:// store /get", "{ours_memory_get_us:.0f}"),
    ("{variant} /get", "{ours_get_us:.0f}"),
    ("... its session's cost ({variant} - no session)", "**{ours_session_cost_us:.0f}**"),
    (
        "... the same /get with the clocks (the parts below add up to it minus no session)",
        "{instrumented_total_us:.0f}",
    ),
    (
        "... ... Flask-ServerSession's own work (memory:// - no session)",
        "{serversession_own_work_us:.0f}",
    ),
    ("... ... `store.load` inside the request", "{store_load_in_request_us:.0f}"),
    (
        "... ... ... the driver's execute (round trip + server)",
        "{driver_execute_in_request_us:.0f}",
    ),
    ("... ... ... SQLAlchemy Core + the store's Python", "{sqlalchemy_and_store_us:.0f}"),
    (
        "... ... the rest: the same Python running slower around a round trip"
        " (clocked - memory:// - store.load)",
        "{rest_us:.0f}",
    ),
    ("session cost that 0.5x cookie allows (2 x cookie - no session)", "{session_budget_us:.0f}"),
)


def breakdown_section(item: dict[str, Any]) -> Section:
    text = (
        "µs per request, medians over the same rounds. *No session* is the same app with a"
        " session interface that does nothing (the test client's and Flask's own cost). The"
        " parts of ours' /get come from a run of /get with clocks around `store.load` and around"
        " the driver's execute (SQLAlchemy's `before/after_cursor_execute`); the isolated calls"
        " are timed in a loop of their own."
    )
    rows = [{"what": what.format_map(item), "us": v.format_map(item)} for what, v in BREAKDOWN]
    rounds = item["isolated_rounds_us"]
    rows += [
        {
            "what": f"isolated: {text}",
            "us": f"{item['isolated_us'][p]:.0f} ({min(rounds[p]):.0f}-{max(rounds[p]):.0f})",
        }
        for p, text in PROBE_PARTS.items()
        if p in rounds
    ]
    heading = f"Where the time of {item['variant']} /get goes"
    return Section(heading, [text], (("what", "{what}"), ("µs", "{us}")), "lr", rows)
