"""What the store-side SESSION_MAX_SIZE check costs a write: ``store.patch`` of one key, with and
without ``Patch.max_size``, on SQLite, Redis, PostgreSQL and MariaDB. See benchmarks/README.md.

    .venv/bin/python benchmarks/patch_bench.py            # about a minute; writes results/
    .venv/bin/python benchmarks/patch_bench.py --quick    # smoke check: few calls, no files
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import report as rp
from harness import Servers, progress
from variants import MARIADB, PG, start_servers

from flask_serversession import store_from_url
from flask_serversession.stores import Patch, Store
from flask_serversession.stores import Record as StoredRecord

#: (keys, bytes per value) of the sessions patched.
SHAPES = [(20, 200), (50, 10_000)]
#: Calls of each kind per shape (the larger session gets a fifth of them).
CALLS = 600
LIMIT = 1024 * 1024
STORES = ["sqlite", "redis", PG, MARIADB]


def store_urls(servers: Servers) -> dict[str, str]:
    """A URL per store kind whose server could start; the others are reported and skipped."""
    start_servers(servers, ["redis", PG, MARIADB])
    urls = {"sqlite": f"sqlite:///{servers.tmp / 'patch.db'}"}
    if "redis" in servers.started:
        urls["redis"] = f"redis://127.0.0.1:{servers.started['redis']}/0"
    urls |= {kind: servers.started[kind].url for kind in (PG, MARIADB) if kind in servers.started}
    return urls


def measure(store: Store, keys: int, size: int, calls: int) -> dict[str, float]:
    """Median µs of one patch of one key, without and with the limit, on a fresh session."""
    now = time.time()
    key = uuid.uuid4().hex * 2
    values = {f"k{i}": '"' + "x" * size + '"' for i in range(keys)}
    assert store.create(key, StoredRecord(values, now, now, now + 3600, now + 7200))
    timings: dict[str, list[float]] = {"no limit": [], "limit": []}
    for call in range(2 * calls):
        (kind, limit), now = ("limit", LIMIT) if call % 2 else ("no limit", None), time.time()
        patch = Patch({"k1": f'"{call}"'}, (), now, now + 3600, max_size=limit)
        started = time.perf_counter()
        applied = store.patch(key, patch)
        timings[kind].append(time.perf_counter() - started)
        assert applied, "a patch within the limit was refused"
    return {kind: statistics.median(times) * 1e6 for kind, times in timings.items()}


def measure_all(urls: dict[str, str], calls: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in [k for k in STORES if k in urls]:
        store = store_from_url(urls[kind])
        try:
            for keys, size in SHAPES:
                n = calls if size < 1000 else max(calls // 5, 10)
                medians = measure(store, keys, size, n)
                rows.append({"store": kind, "keys": keys, "value_bytes": size, **medians})
                rows[-1]["ratio"] = medians["limit"] / medians["no limit"]
                progress(f"{kind} {keys} x {size} B: {medians}")
        finally:
            store.close()
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    intro = [
        "Median µs of `store.patch` of one key, straight on the store, without and with",
        f"`Patch.max_size` ({LIMIT:,} bytes), calls alternating; {rp.load_line(report)}",
    ]
    columns = rp.columns(
        "store: {store} | session: {keys} keys x {value_bytes:,} B | no limit: {no limit:,.0f}"
        " | limit: {limit:,.0f} | ratio: {ratio:x}"
    )
    sections = [rp.Section(None, (), columns, "llrrr", report["rows"])]
    return rp.render(f"Store-side size check, {report['date']}", intro, sections, report["command"])


def main(argv: Sequence[str]) -> int:
    args = rp.parse(__doc__, argv)
    record = rp.Record("patch", argv)
    with tempfile.TemporaryDirectory(prefix="patch-bench-") as tmp, ExitStack() as stack:
        rows = measure_all(store_urls(Servers(stack, Path(tmp))), 20 if args.quick else CALLS)
    return record.finish(args, render_markdown, {}, rows=rows)


if __name__ == "__main__":
    rp.run_main(main)
