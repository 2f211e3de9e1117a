"""Stores of many sessions, for scale_bench.py: reproducible sessions, each store bulk-loaded in
its own format (SQLite: one ``executemany``; Redis: pipelined HSET + PEXPIRE; PostgreSQL: COPY;
MariaDB: LOAD DATA), what each occupies, and timed reads of them, the sizes interleaved call by
call, every answer checked after the clocks stopped.
"""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import itertools
import json
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from harness import HOST, SECRET_KEY, BenchmarkError, create_app, progress, rotated
from variants import PG, SQLServer, count_rows, redis_admin

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Record, Store, Touch
from flask_serversession.stores.sql import SQLStore

#: The mode that times ``GET /get`` through the test client; the others time ``store.load``.
TESTCLIENT_GET = "testclient-get"
DAY = 24 * 3600.0
#: The library's defaults: 30 minutes idle, 30 days in all.
IDLE_TIMEOUT, ABSOLUTE_TIMEOUT = 30 * 60.0, 30 * DAY
#: Touch interval of the scale stores: shorter than the idle timeout (the library requires it)
#: and longer than any live session has been idle, so that a measured read is a read.
SCALE_TOUCH_INTERVAL = 20 * 60.0
REDIS_BATCH = 10_000
REDIS_PREFIX = "scale:"
#: The columns of a session row, in the order the bulk loads write them.
COLUMNS = "key data created last_seen expires absolute_expires user_id ended version".split()


@dataclass(frozen=True)
class Stored:
    """One session as a store keeps it."""

    key: str
    values: dict[str, str]
    created: float
    last_seen: float
    expires: float
    absolute_expires: float
    user_id: str | None = None
    ended: bool = False
    version: int = 1

    def row(self) -> tuple[Any, ...]:
        times = (self.created, self.last_seen, self.expires, self.absolute_expires)
        return (self.key, json.dumps(self.values), *times, self.user_id, self.ended, self.version)


def session_id_of(tag: str, index: int) -> str:
    """A reproducible session ID (43 URL-safe characters, like a real one) for ``index``."""
    digest = hashlib.sha256(f"bench:{tag}:{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def user_of(index: int) -> str:
    return f"user{index}"


def live_sessions(tag: str, count: int, now: float, seed: int) -> Iterator[Stored]:
    """Live sessions as the store writes them (README.md: Scaling and session size)."""
    rng = random.Random(f"{seed}:{tag}")
    uniform, randrange, chance, bits = rng.uniform, rng.randrange, rng.random, rng.getrandbits
    for index in range(count):
        cart = [randrange(1, 500) for _ in range(randrange(0, 5))]
        values = {
            "user": json.dumps(user_of(index)),
            "cart": json.dumps(cart, separators=(",", ":")),
            "csrf_token": json.dumps(f"{bits(160):040x}"),
        }
        if chance() < 0.5:
            values["_permanent"] = "true"
        created, last_seen = now - uniform(3600, 20 * DAY), now - uniform(0, 600)
        absolute = created + ABSOLUTE_TIMEOUT
        user_id = user_of(index) if chance() < 0.7 else None
        expires = min(last_seen + IDLE_TIMEOUT, absolute)
        key = store_key(session_id_of(tag, index))
        version = randrange(1, 40)
        yield Stored(key, values, created, last_seen, expires, absolute, user_id, False, version)


def expired_sessions(
    tag: str, count: int, now: float, seed: int, tombstones: float
) -> Iterator[Stored]:
    """Sessions past their end: ``tombstones`` of them logouts', the others idle too long."""
    rng = random.Random(f"{seed}:{tag}")
    for index in range(count):
        key = store_key(session_id_of(tag, index))
        if rng.random() < tombstones:
            until = now - rng.uniform(60, 7 * DAY)
            yield Stored(key, {}, until, until, until, until, None, True, 1)
            continue
        expires = now - rng.uniform(60, 7 * DAY)
        created = expires - IDLE_TIMEOUT - rng.uniform(0, 3 * DAY)
        values = {"user": json.dumps(user_of(index)), "cart": "[]"}
        seen, absolute = expires - IDLE_TIMEOUT, created + ABSOLUTE_TIMEOUT
        yield Stored(key, values, created, seen, expires, absolute, None, False, 3)


def check_row_format() -> None:
    """The generated values are what the library writes for the same Python values."""
    for name, value, text in (
        ("user", user_of(7), json.dumps(user_of(7))),
        ("cart", [3, 41, 7], json.dumps([3, 41, 7], separators=(",", ":"))),
        ("csrf_token", "0f" * 20, json.dumps("0f" * 20)),
        ("_permanent", True, "true"),
    ):
        if (written := dumps_value(name, value)) != text:
            raise BenchmarkError(f"row format: {name} is {written!r}, not {text!r}")


@dataclass
class ScaleTarget:
    """One store of ``size`` sessions, an app's test client on it, how to fill and measure it."""

    kind: str
    size: int
    store: Store
    client: FlaskClient
    insert: Callable[[Iterable[Stored]], None]
    count: Callable[[], int]
    footprint: Callable[[], dict[str, Any]]
    load_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.kind}-{self.size}"

    def load(self, now: float, seed: int) -> None:
        """The live sessions in, timed, counted; a sample read back directly and through the app."""
        started = time.perf_counter()
        self.insert(live_sessions(self.tag, self.size, now, seed))
        self.load_seconds = time.perf_counter() - started
        if self.count() != self.size:
            raise BenchmarkError(f"{self.tag}: not all {self.size:,} sessions arrived")
        self.details = {"rows_per_second": round(self.size / self.load_seconds), **self.footprint()}
        progress(f"{self.tag}: {self.size:,} sessions in {self.load_seconds:.1f} s")
        rng = random.Random(f"{seed}:{self.tag}:sample")
        sample = [0, self.size - 1, *(rng.randrange(self.size) for _ in range(20))]
        for mode in ("load", TESTCLIENT_GET):
            calls, check = prepare_calls(self, mode, sample)
            check([call() for call in calls])


def _app_on(url: str) -> tuple[FlaskClient, Store]:
    # No cleanup behind the measurement's back: clear_expired is measured on its own.
    options = {"touch_interval": SCALE_TOUCH_INTERVAL, "cleanup_interval": 0}
    app = create_app(lambda app: ServerSession(app, store=url, **options))
    store = ServerSession.store_of(app)
    if isinstance(store, SQLStore):
        store.create_schema()  # the table and its indexes, as the store creates them
    return app.test_client(use_cookies=False), store


def _sqlite_insert(path: Path, sessions: Iterable[Stored]) -> None:
    """The sessions in one transaction, sorted by key (the table is WITHOUT ROWID)."""
    rows = sorted(s.row()[:6] + (s.ended,) for s in sessions)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO serversession ({', '.join(COLUMNS[:6])}, user_id, ended, info)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
            rows,
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def sqlite_target(size: int, tmp: Path) -> ScaleTarget:
    path = tmp / f"scale-{size}.sqlite3"
    client, store = _app_on(f"sqlite:///{path}")  # creates the file, its table and indexes
    insert, count = functools.partial(_sqlite_insert, path), count_rows(path, "serversession")

    def footprint() -> dict[str, Any]:
        return {"file_bytes": path.stat().st_size}

    return ScaleTarget("sqlite", size, store, client, insert, count, footprint)


def _redis_insert(client: Any, sessions: Iterable[Stored]) -> None:
    """The sessions as the store writes them, HSET + PEXPIRE pipelined in batches."""
    now_ms = round(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n, s in enumerate(sessions, 1):
        ms = [round(t * 1000) for t in (s.created, s.last_seen, s.expires, s.absolute_expires)]
        mapping: dict[str, int | str] = {k: t for k, t in zip("csea", ms, strict=True)}
        mapping.update({":" + name: text for name, text in s.values.items()})
        key = f"{REDIS_PREFIX}{{{s.key}}}"
        pipe.hset(key, mapping=mapping)
        pipe.pexpire(key, max(1, round(min(s.expires, s.absolute_expires) * 1000) - now_ms))
        if n % REDIS_BATCH == 0:
            pipe.execute()
    pipe.execute()


def redis_target(size: int, port: int, db: int) -> ScaleTarget:
    client, store = _app_on(f"redis://{HOST}:{port}/{db}?prefix={REDIS_PREFIX}")
    admin = redis_admin(port, db)
    # The server's memory before this database is filled (the databases fill one by one).
    before = int(admin.info("memory")["used_memory"])

    def footprint() -> dict[str, Any]:
        added = int(admin.info("memory")["used_memory"]) - before
        admin.close()
        return {"used_memory_added_bytes": added, "bytes_per_session": round(added / size)}

    insert = functools.partial(_redis_insert, admin)
    return ScaleTarget("redis", size, store, client, insert, lambda: int(admin.dbsize()), footprint)


def _copy_pg(server: SQLServer, table: str, rows: Iterable[Stored]) -> None:
    from psycopg import sql

    with closing(server.connect()) as conn:
        columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row.row())


def _tsv(s: Stored) -> str:
    row = [repr(v) if isinstance(v, float) else str(v) for v in s.row()]
    row[6:8] = ["NULL" if s.user_id is None else s.user_id, str(int(s.ended))]
    return "\t".join(row) + "\n"


def _load_data_mariadb(server: SQLServer, table: str, rows: Iterable[Stored], tmp: Path) -> None:
    # A tab-separated file, sorted by key: InnoDB keeps rows in primary-key order anyway, and a
    # sorted load fills its pages in one pass. No escape character: JSON has no tab nor newline.
    path = tmp / f"{table}.tsv"
    path.write_text("".join(sorted(map(_tsv, rows))), encoding="utf-8")
    columns = ", ".join(f"`{c}`" for c in COLUMNS)
    try:
        server.query(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 FIELDS"
            f" TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
            (str(path),),
        )
    finally:
        path.unlink()


def _sql_insert(server: SQLServer, table: str, tmp: Path, rows: Iterable[Stored]) -> None:
    """Rows into ``table`` (COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB), analyzed."""
    if server.kind == PG:
        _copy_pg(server, table, rows)
        server.query(f'VACUUM (ANALYZE) "{table}"')
    else:
        _load_data_mariadb(server, table, rows, tmp)
        server.query(f"ANALYZE TABLE `{table}`")


def table_sizes(server: SQLServer, table: str) -> dict[str, Any]:
    if server.kind == PG:
        query = "SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table)
    else:
        query = (
            "SELECT data_length, index_length FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = %s",
            (server.database, table),
        )
    data, index = server.query(*query)[0]
    return {"table_bytes": int(data), "index_bytes": int(index)}


def sql_target(server: SQLServer, size: int, tmp: Path) -> ScaleTarget:
    table = f"scale_{size}"
    client, store = _app_on(f"{server.url}?table={table}")
    insert = functools.partial(_sql_insert, server, table, tmp)
    count, sizes = functools.partial(server.count, table), lambda: table_sizes(server, table)
    return ScaleTarget(server.kind, size, store, client, insert, count, sizes)


def log_position(server: SQLServer) -> int:
    """Bytes of write-ahead log (PostgreSQL's WAL, InnoDB's redo log) written so far."""
    if server.kind == PG:
        return int(server.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0])
    return int(server.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")[0][1])


def pg_scans(server: SQLServer, sizes: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Sequential and index scans of each size's table so far (PostgreSQL only)."""
    if server.kind != PG:
        return {}
    time.sleep(0.3)  # backends that just closed flush their statistics as they exit
    rows = server.query(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        ([f"scale_{size}" for size in sizes],),
    )
    return {int(name.removeprefix("scale_")): (int(seq), int(idx)) for name, seq, idx in rows}


# -- timed calls ---------------------------------------------------------------------------------


def touch_for(mode: str, now: float) -> Touch:
    """``load-touch-due``: every live session's touch is due; otherwise none is."""
    if mode == "load-touch-due":
        return Touch(now, now + IDLE_TIMEOUT, now + 1.0)
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


PerRound = dict[str, dict[int, list[list[float]]]]
Prepared = tuple[list[Callable[[], Any]], Callable[[list[Any]], None]]


def prepare_calls(target: ScaleTarget, mode: str, indices: Sequence[int]) -> Prepared:
    """The calls of one measurement, made before the clocks run, and the check of their answers."""
    now = time.time()
    ids = [session_id_of(target.tag, i) for i in indices]
    calls: list[Callable[[], Any]]
    if mode == TESTCLIENT_GET:
        get, sign = target.client.get, CookieSigner([SECRET_KEY]).sign
        cookies = [{"Cookie": f"session={sign(i)}"} for i in ids]
        calls = [
            functools.partial(get, "/get", headers=cookie, buffered=True) for cookie in cookies
        ]
    else:
        load, touch = target.store.load, touch_for(mode, now)
        calls = [functools.partial(load, store_key(i), touch) for i in ids]

    def user(answer: Any) -> Any:
        if isinstance(answer, Record):
            return json.loads(answer.values.get("user", "null")) if answer.is_live(now) else None
        return answer.get_data(as_text=True) if answer and answer.status_code == 200 else None

    def check(answers: list[Any]) -> None:
        for index, answer in zip(indices, answers, strict=True):
            if user(answer) != user_of(index):
                raise BenchmarkError(f"{target.tag} {mode}: session {index} answered {answer!r}")

    return calls, check


def time_interleaved(
    targets: Sequence[ScaleTarget], mode: str, calls: int, rng: random.Random, shift: int
) -> dict[int, list[float]]:
    """µs per call, per size: ``calls`` calls per size on random sessions, interleaved."""
    prepared = {
        t.size: prepare_calls(t, mode, [rng.randrange(t.size) for _ in range(calls)])
        for t in targets
    }
    times: dict[int, list[float]] = {t.size: [] for t in targets}
    answers: dict[int, list[Any]] = {t.size: [] for t in targets}
    clock = time.perf_counter
    gc.collect()
    for step in range(calls):
        for size in rotated(list(prepared), step + shift):
            call = prepared[size][0][step]
            started = clock()
            answers[size].append(call())
            times[size].append(clock() - started)
    for size, (_, check) in prepared.items():
        check(answers[size])
    return {size: [t * 1e6 for t in values] for size, values in times.items()}


def time_modes(
    targets: Sequence[ScaleTarget], modes: Sequence[str], rounds: int, calls: int, rng: Any
) -> tuple[PerRound, list[list[str]]]:
    """µs per call per mode, size and round (the modes rotated each round); the orders."""
    per_round: PerRound = {m: {t.size: [] for t in targets} for m in modes}
    order = []
    for round_index in range(rounds):
        order.append(rotated(modes, round_index))
        for mode in order[-1]:
            for size, values in time_interleaved(targets, mode, calls, rng, round_index).items():
                per_round[mode][size].append(values)
        progress(f"{targets[0].kind} scale: round {round_index + 1}/{rounds} done")
    return per_round, order


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize_scale(
    per_round: PerRound, sizes: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per size and mode: median, p90, p99, round medians, ratios to the smallest store."""
    summary: dict[str, dict[str, dict[str, Any]]] = {str(size): {} for size in sizes}
    for mode, by_size in per_round.items():
        base = statistics.median(itertools.chain.from_iterable(by_size[min(sizes)]))
        base_rounds = [statistics.median(r) for r in by_size[min(sizes)]]
        for size in sizes:
            every = list(itertools.chain.from_iterable(by_size[size]))
            medians = [statistics.median(r) for r in by_size[size]]
            summary[str(size)][mode] = {
                "median_us": statistics.median(every),
                "p90_us": percentile(every, 0.9),
                "p99_us": percentile(every, 0.99),
                "round_median_min_us": min(medians),
                "round_median_max_us": max(medians),
                "ratio_to_smallest": statistics.median(every) / base,
                "round_ratios": [m / b for m, b in zip(medians, base_rounds, strict=True)],
            }
    return summary
