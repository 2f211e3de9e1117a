"""The scale part of the SQL benchmark: tables of 1,000 to 1,000,000 sessions bulk-loaded in the
store's own format (COPY on PostgreSQL, LOAD DATA on MariaDB), load latency per size, the scans
and write-ahead log it caused, and ``clear_expired`` of many expired sessions.
"""

from __future__ import annotations

import functools
import json
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from harness import BenchmarkError, create_app, goal_status, progress
from report import Cell, Section
from scaling import (
    IDLE_TIMEOUT,
    SCALE_COLUMNS,
    SCALE_TOUCH_INTERVAL,
    Stored,
    clear_expired_note,
    expired_sessions,
    live_sessions,
    measure_clear_expired,
    prepare_calls,
    scale_rows,
    summarize_scale,
    time_interleaved,
    time_modes,
    user_of,
    verify_sample,
)
from sql_server import MARIADB, PG, SQLServer

from flask_serversession import ServerSession
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Touch
from flask_serversession.stores.sql import SQLStore

SCALE_SIZES = (1_000, 100_000, 1_000_000)
#: Load latency with the largest table may be at most this many times that with the smallest.
SCALE_GOAL = 1.2
SCALE_MODES = ("load", "load-touch-due", "testclient-get")
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "load-touch-due": "store.load(key, touch), touch due (a read that refreshes the expiry)",
    "testclient-get": "GET /get through the test client (cookie of that session)",
}
COPY_COLUMNS: tuple[str, ...] = (
    "key",
    "data",
    "created",
    "last_seen",
    "expires",
    "absolute_expires",
)
COPY_COLUMNS += ("user_id", "ended", "version")
# -- the scale part ------------------------------------------------------------------------------


def _row(s: Stored) -> tuple[Any, ...]:
    """A session as a table row, in COPY_COLUMNS order."""
    data = json.dumps(s.values)
    return (s.key, data, s.created, s.last_seen, s.expires, s.absolute_expires) + (
        s.user_id,
        s.ended,
        s.version,
    )


def check_row_format() -> None:
    """The generated values are what the library writes for the same Python values."""
    for name, value, text in (
        ("user", user_of(7), json.dumps(user_of(7))),
        ("cart", [3, 41, 7], json.dumps([3, 41, 7], separators=(",", ":"))),
        ("csrf_token", "0f" * 20, json.dumps("0f" * 20)),
        ("_permanent", True, "true"),
    ):
        if dumps_value(name, value) != text:
            raise BenchmarkError(
                f"row format: {name} is {dumps_value(name, value)!r}, not {text!r}"
            )


def _copy_pg(server: SQLServer, table: str, rows: Iterable[Stored]) -> None:
    from psycopg import sql

    conn = server.connect()
    try:
        columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(_row(row))
    finally:
        conn.close()


def _tsv(s: Stored) -> str:
    user_id = "NULL" if s.user_id is None else s.user_id
    return (
        f"{s.key}\t{json.dumps(s.values)}\t{s.created!r}\t{s.last_seen!r}\t{s.expires!r}"
        f"\t{s.absolute_expires!r}\t{user_id}\t{int(s.ended)}\t{s.version}\n"
    )


def bulk_insert(server: SQLServer, table: str, rows: Iterable[Stored], workdir: Path) -> None:
    """Rows into ``table``: COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB."""
    if server.kind == PG:
        _copy_pg(server, table, rows)
        return
    # A tab-separated file, sorted by key: InnoDB keeps rows in primary-key order anyway, and a
    # sorted load fills its pages in one pass. No escape character: JSON has no tab nor newline.
    lines = sorted(map(_tsv, rows))
    path = workdir / f"{table}.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    del lines
    columns = ", ".join(f"`{c}`" for c in COPY_COLUMNS)
    try:
        server.query(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4"
            f" FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
            (str(path),),
        )
    finally:
        path.unlink()


@dataclass
class ScaleTarget:
    """One table of ``size`` sessions, its store and an app serving it."""

    server: SQLServer
    size: int
    table: str
    tag: str
    store: SQLStore
    client: FlaskClient
    insert_seconds: float = 0.0
    sizes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.table


def build_scale_target(
    server: SQLServer, size: int, now: float, seed: int, workdir: Path
) -> ScaleTarget:
    tag = f"{server.kind}-{size}"
    table = f"scale_{size}"
    store = SQLStore.from_url(f"{server.url}?table={table}")
    store.create_schema()  # the table and its indexes, as the store creates them
    started = time.perf_counter()
    bulk_insert(server, table, live_sessions(tag, size, now, seed), workdir)
    insert_seconds = time.perf_counter() - started
    server.query(f'VACUUM (ANALYZE) "{table}"' if server.kind == PG else f"ANALYZE TABLE `{table}`")

    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=store, touch_interval=SCALE_TOUCH_INTERVAL, cleanup_interval=0)

    client = create_app(configure).test_client(use_cookies=False)
    target = ScaleTarget(server, size, table, tag, store, client, insert_seconds)
    target.sizes = table_sizes(server, table)
    progress(f"{server.kind}: {size:,} sessions in {table} in {insert_seconds:.1f} s")
    return target


def table_sizes(server: SQLServer, table: str) -> dict[str, Any]:
    if server.kind == MARIADB:
        data, index = server.query(
            "SELECT data_length, index_length FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = %s",
            (server.database, table),
        )[0]
        return {"table_bytes": int(data), "index_bytes": int(index), "pk_levels": None}
    heap, indexes = server.query("SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table))[0]
    levels = None
    try:
        server.query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        # The level of the root, plus one: 0 means the root is a leaf.
        levels = int(server.query("SELECT level FROM bt_metap(%s)", (f"{table}_pkey",))[0][0]) + 1
    except Exception:  # pageinspect is not always installed
        pass
    return {"table_bytes": int(heap), "index_bytes": int(indexes), "pk_levels": levels}


def _touch(mode: str, now: float) -> Touch:
    if mode == "load-touch-due":
        return Touch(now, now + IDLE_TIMEOUT, now + 1.0)  # every live session is due
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


def log_position(server: SQLServer) -> int:
    """Bytes of write-ahead log (PostgreSQL's WAL, InnoDB's redo log) written so far."""
    if server.kind == PG:
        return int(server.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0])
    return int(server.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")[0][1])


def log_bytes_per_call(target: ScaleTarget, mode: str, calls: int, rng: random.Random) -> float:
    """Write-ahead log bytes the server wrote per call, in a pass of its own (not timed)."""
    indices = [rng.randrange(target.size) for _ in range(calls)]
    prepared, check = prepare_calls(target, mode, indices, functools.partial(_touch, mode))
    before = log_position(target.server)
    answers = [call() for call in prepared]
    written = log_position(target.server) - before
    check(answers)
    return written / calls


def pg_scans(server: SQLServer, tables: Sequence[str]) -> dict[str, tuple[int, int]]:
    if server.kind != PG:
        return {}
    time.sleep(0.3)  # backends that just closed flush their statistics as they exit
    rows = server.query(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        (list(tables),),
    )
    return {str(name): (int(seq), int(idx)) for name, seq, idx in rows}


def _warm(targets: Sequence[ScaleTarget], calls: int, rng: random.Random) -> None:
    for mode in SCALE_MODES:  # pools filled, statements prepared
        time_interleaved(targets, mode, calls, rng, 0, functools.partial(_touch, mode))


def _measure_scale(targets: list[ScaleTarget], args: Any, rng: random.Random) -> dict[str, Any]:
    """The timed rounds, with the scans they caused (a sequential scan of a sessions table
    would be the scaling failure itself) and the log bytes per call."""
    server = targets[0].server
    for target in targets:
        verify_sample(target, rng)
        if server.count(target.table) != target.size:
            raise BenchmarkError(f"{target.table}: not all {target.size:,} rows arrived")
    _warm(targets, 200, rng)
    # Statistics before and after, from fresh connections.
    for target in targets:
        target.store.close()
    tables = [t.table for t in targets]
    before = pg_scans(server, tables)
    _warm(targets, 50, rng)  # connected again, statements prepared again
    per_round, order = time_modes(
        targets, SCALE_MODES, args.scale_rounds, args.scale_calls, rng, _touch, server.kind
    )
    log_bytes = {
        str(t.size): {
            m: log_bytes_per_call(t, m, min(args.scale_calls, 500), rng) for m in SCALE_MODES
        }
        for t in targets
    }
    for target in targets:
        target.store.close()
    after = pg_scans(server, tables)
    for target in targets:
        if target.table in before and target.table in after:
            target.sizes["seq_scans"] = after[target.table][0] - before[target.table][0]
            target.sizes["index_scans"] = after[target.table][1] - before[target.table][1]
    return {
        "order": order,
        "summary": summarize_scale(per_round, [t.size for t in targets]),
        "log_bytes_per_call": log_bytes,
        "raw_round_medians_us": {
            str(size): {
                mode: [statistics.median(r) for r in per_round[mode][size]] for mode in SCALE_MODES
            }
            for size in (t.size for t in targets)
        },
    }


def run_scale(server: SQLServer, args: Any, workdir: Path) -> dict[str, Any]:
    """Load latency with each table size, interleaved round by round, then clear_expired."""
    rng = random.Random(f"{args.seed}:{server.kind}:samples")
    now = time.time()
    targets: list[ScaleTarget] = []
    try:
        for size in args.size_list:
            targets.append(build_scale_target(server, size, now, args.seed, workdir))
        result: dict[str, Any] = {
            "server": server.kind,
            "sizes": list(args.size_list),
            "rounds": args.scale_rounds,
            "calls_per_measurement": args.scale_calls,
            **_measure_scale(targets, args, rng),
        }
        result["tables"] = {
            str(t.size): {
                "table": t.table,
                "insert_seconds": round(t.insert_seconds, 2),
                "rows_per_second": round(t.size / t.insert_seconds),
                **t.sizes,
            }
            for t in targets
        }
        largest = targets[-1]
        expired = expired_sessions(
            f"{largest.tag}-expired", args.expired, time.time(), args.seed, 0.1
        )
        result["clear_expired"] = measure_clear_expired(
            largest.store,
            largest.size,
            args.expired,
            functools.partial(server.count, largest.table),
            lambda: bulk_insert(server, largest.table, expired, workdir),
        )
        return result
    finally:
        for target in targets:
            target.store.close()


def evaluate_scale_goals(scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for kind, result in scale.items():
        largest, smallest = str(max(result["sizes"])), min(result["sizes"])
        for mode in SCALE_MODES:
            entry = result["summary"][largest][mode]
            measured = entry["ratio_to_smallest"]
            goals.append(
                {
                    "goal": f"{kind} {mode}: latency with {int(largest):,} sessions <="
                    f" {SCALE_GOAL}x that with {smallest:,}",
                    "server": kind,
                    "mode": mode,
                    "primary": kind == PG and mode == "load",
                    "target_ratio": SCALE_GOAL,
                    "ratio": measured,
                    "round_ratios": entry["round_ratios"],
                    "status": goal_status(measured <= SCALE_GOAL, measured),
                }
            )
    return goals


def _mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.1f} MiB"


def scale_sections(kind: str, result: dict[str, Any]) -> list[Section]:
    smallest = min(result["sizes"])
    text = (
        f"Tables of {', '.join(f'{s:,}' for s in result['sizes'])} live sessions in the store's"
        f" own row format (bulk-loaded, then analyzed), each with its own store. {result['rounds']}"
        f" rounds; in each, for each kind of call, {result['calls_per_measurement']:,} calls per"
        " table, the tables interleaved call by call (their order rotated at every step), so that"
        " whatever disturbs the machine hits every size alike; each call on a session drawn at"
        " random from its whole table, each call timed. Median, p90 and p99 over all calls;"
        f" *round medians* the range of the per-round medians; *vs smallest* the median over that"
        f" of the {smallest:,}-session table, *per round* the same ratio round by round; *log"
        " bytes per call* the write-ahead log the server wrote per call (PostgreSQL WAL, InnoDB"
        " redo), from a pass of its own after the timed rounds (server-wide, so background work"
        " such as autovacuum or InnoDB's purge shows as a few bytes): a read writes none, a due"
        " touch writes its row and index entries, plus, on PostgreSQL, a full image of each page"
        " it is the first to modify since the last checkpoint (`full_page_writes`)."
    )
    modes = [f"- **{mode}**: {SCALE_MODE_TEXT[mode]}" for mode in SCALE_MODES]
    rows = scale_rows(kind, result, SCALE_MODES)
    tables = [{**result["tables"][str(size)], "size": size} for size in result["sizes"]]
    clear = result["clear_expired"]
    notes = [clear_expired_note(clear, " (10% of them tombstones)")] if clear else []
    columns = (*SCALE_COLUMNS[1:], ("log bytes per call", "{log:,.0f}"))
    return [
        Section(f"Scale on {kind}", [text], notes=modes),
        Section(None, (), columns, "lrrrrrrrr", rows),
        Section(None, (), TABLE_COLUMNS, "rrrrrrr", tables, notes),
    ]


TABLE_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("sessions", "{size:,}"),
    ("bulk insert s", "{insert_seconds:.1f}"),
    ("rows/s", "{rows_per_second:,}"),
    ("table", lambda t: _mb(t["table_bytes"])),
    ("indexes", lambda t: _mb(t["index_bytes"])),
    ("primary key levels", lambda t: "n/a" if t["pk_levels"] is None else t["pk_levels"]),
    (
        "seq scans / index scans while measured",
        lambda t: f"{t['seq_scans']} / {t['index_scans']:,}" if "seq_scans" in t else "n/a",
    ),
)
