"""What the store-side SESSION_MAX_SIZE check costs a write: ``store.patch`` of one key, with and
without ``Patch.max_size``, on SQLite, Redis, PostgreSQL and MariaDB.

Straight on the store (no Flask): a session of 20 keys of 200 bytes (about 4 KB, a typical one)
and of 50 keys of 10 KB (500 KB, near the default limit's scale), each patched over and over.
The two kinds of patch alternate call by call; each call is timed on its own and the medians
are compared. The servers run on 127.0.0.1 on free ports and are stopped by PID however the run
ends (redis-server from bench_servers.py, PostgreSQL and MariaDB from sql_bench.py).

    .venv/bin/python benchmarks/patch_bench.py            # about a minute; writes results/
    .venv/bin/python benchmarks/patch_bench.py --quick    # smoke check: few calls, no files
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench_servers import HOST, Unavailable, redis_process, stopped_at_exit
from harness import load_average, reproduce_lines, run_main, write_results
from sql_bench import mariadb_server, postgresql_server

from flask_serversession import store_from_url
from flask_serversession.stores import Patch, Record, Store

#: (keys, bytes per value) of the sessions patched.
SHAPES = [(20, 200), (50, 10_000)]
#: Calls of each kind per shape (the larger session gets a fifth of them).
CALLS = 600
LIMIT = 1024 * 1024
STORES = ["sqlite", "redis", "postgresql", "mariadb"]


@contextmanager
def store_urls(tmp: Path) -> Iterator[dict[str, str]]:
    """A URL per store kind whose server could start; the others are reported and skipped."""
    urls = {"sqlite": f"sqlite:///{tmp / 'patch.db'}"}
    with ExitStack() as stack:
        try:
            redis = stack.enter_context(stopped_at_exit(redis_process(tmp)))
            urls["redis"] = f"redis://{HOST}:{redis.port}/0"
        except Unavailable as exc:
            print(f"redis skipped: {exc}", file=sys.stderr)
        for kind, start in (("postgresql", postgresql_server), ("mariadb", mariadb_server)):
            try:
                urls[kind] = stack.enter_context(start()).url
            except Unavailable as exc:
                print(f"{kind} skipped: {exc}", file=sys.stderr)
        yield urls


def measure(store: Store, keys: int, size: int, calls: int) -> dict[str, float]:
    """Median µs of one patch of one key, without and with the size limit, on a fresh session of
    ``keys`` values of ``size`` bytes."""
    now = time.time()
    key = uuid.uuid4().hex * 2
    values = {f"k{i}": '"' + "x" * size + '"' for i in range(keys)}
    assert store.create(key, Record(values, now, now, now + 3600, now + 7200))
    timings: dict[str, list[float]] = {"no limit": [], "limit": []}
    for call in range(2 * calls):
        kind = "limit" if call % 2 else "no limit"
        patch = Patch(
            {"k1": f'"{call}"'},
            (),
            time.time(),
            time.time() + 3600,
            max_size=LIMIT if kind == "limit" else None,
        )
        started = time.perf_counter()
        applied = store.patch(key, patch)
        timings[kind].append(time.perf_counter() - started)
        assert applied, "a patch within the limit was refused"
    return {kind: statistics.median(times) * 1e6 for kind, times in timings.items()}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few calls, no files written")
    args = parser.parse_args(argv)
    calls = 20 if args.quick else CALLS
    started_at = dt.datetime.now(dt.timezone.utc)
    load_before = load_average()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="patch-bench-") as tmp, store_urls(Path(tmp)) as urls:
        for kind in STORES:
            if kind not in urls:
                continue
            store = store_from_url(urls[kind])
            try:
                for keys, size in SHAPES:
                    n = calls if size < 1000 else max(calls // 5, 10)
                    medians = measure(store, keys, size, n)
                    rows.append({"store": kind, "keys": keys, "value_bytes": size, **medians})
                    print(f"{kind} {keys} x {size} B: {medians}", file=sys.stderr, flush=True)
            finally:
                store.close()
    command = "python benchmarks/patch_bench.py" + "".join(" " + shlex.quote(a) for a in argv)
    lines = [
        f"# Store-side size check, {started_at.date().isoformat()}",
        "",
        "Median µs of `store.patch` of one key, straight on the store, without and with",
        f"`Patch.max_size` ({LIMIT:,} bytes), calls alternating; load average {load_before}"
        f" before, {load_average()} after.",
        "",
        "| store | session | no limit | limit | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        ratio = row["limit"] / row["no limit"]
        shape = f"{row['keys']} keys x {row['value_bytes']:,} B"
        lines.append(
            f"| {row['store']} | {shape} | {row['no limit']:,.0f} | {row['limit']:,.0f}"
            f" | {ratio:.2f}x |"
        )
    lines += reproduce_lines(command, "python benchmarks/patch_bench.py")
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        report = {"benchmark": "patch", "started_at": started_at.isoformat(), "rows": rows}
        write_results(f"{started_at.date().isoformat()}-patch", report, markdown)
    return 0


if __name__ == "__main__":
    run_main(main)
