"""Scaling (read latency with 1,000 to 1,000,000 stored sessions, ``clear_expired``) and session
size (µs per request with sessions of ~0.1 to 100 KB), through Flask's test client. See README.md.

    python benchmarks/scale_bench.py             # the full run, about 7 minutes
    python benchmarks/scale_bench.py --quick     # smoke check: small sizes, no files written
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import harness as h
import report as rp
import scale_stores as ss
import variants
from variants import MARIADB, PG, SQLServer

#: The kinds of call timed per store: a due touch only on the SQL stores, where it writes a row.
MODES = {
    "sqlite": ("load", ss.TESTCLIENT_GET),
    "redis": ("load", ss.TESTCLIENT_GET),
    PG: ("load", "load-touch-due", ss.TESTCLIENT_GET),
    MARIADB: ("load", "load-touch-due", ss.TESTCLIENT_GET),
}
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "load-touch-due": "store.load(key, touch), touch due (a read that refreshes the expiry)",
    ss.TESTCLIENT_GET: "GET /get through the test client (cookie of that session)",
}
#: Per store, the share of tombstones among the expired sessions; Redis expires keys itself.
TOMBSTONES = {"sqlite": 0.0, PG: 0.1, MARIADB: 0.1}
CLEAR_BATCH_SIZE = 1000  # SESSION_CLEANUP_BATCH_SIZE's default
#: On the SQL stores, load latency with the largest table at most this times the smallest's.
SCALE_GOAL = 1.2
#: A store of one size, not loaded yet: (size, its number among the sizes, servers) -> target.
BUILDERS: dict[str, Callable[[int, int, h.Servers], ss.ScaleTarget]] = {
    "sqlite": lambda size, n, servers: ss.sqlite_target(size, servers.tmp),
    "redis": lambda size, n, servers: ss.redis_target(size, servers.require("redis"), n),
    PG: lambda size, n, servers: ss.sql_target(servers.require(PG), size, servers.tmp),
    MARIADB: lambda size, n, servers: ss.sql_target(servers.require(MARIADB), size, servers.tmp),
}
#: The values of the size part's sessions are of about this many bytes each.
VALUE_BYTES = 340
SIZE_VARIANTS = "cookie ours-memory ours-sqlite ours-redis ours-memcached ours-postgresql"
SIZE_VARIANTS += " ours-mariadb flask-session-redis flask-session-sqlalchemy"
SIZE_ENDPOINTS = ("get", "rw", "set")
SIZE_ENDPOINT_TEXT = {
    "get": "`session.get('user')`: one key read (ours loads the whole session, decodes one value)",
    "rw": "`session.get('user')`, then `session['n'] = <new number>`: one key read, one written",
    "set": "`session['n'] = <new number>`: one key written (ours: a patch, without loading)",
}
#: Werkzeug's max_cookie_size: browsers ignore bigger cookies, Werkzeug warns.
COOKIE_LIMIT = 4093
#: The full run's sizes and counts, and the quick run's.
FULL: dict[str, Any] = {"calls": 1000, "expired": 100_000, "seed": 20261125}
FULL |= {"scale_sizes": [1_000, 100_000, 1_000_000], "session_sizes": [100, 1_000, 10_000, 100_000]}
QUICK: dict[str, Any] = dict(rounds=1, seconds=0.02, warmup=0.01, calls=100, expired=1000)
QUICK |= {"scale_sizes": [100, 1_000, 10_000], "session_sizes": [100, 1_000, 10_000]}
SETTINGS: dict[str, Any] = {"touch_interval": ss.SCALE_TOUCH_INTERVAL, "cookie_limit": COOKIE_LIMIT}
SETTINGS |= {"redis_batch": ss.REDIS_BATCH, "postgresql": variants.PG_SETTINGS}
SETTINGS |= {"mariadb": list(variants.MARIADB_SETTINGS)}


# -- the scale part ------------------------------------------------------------------------------


def _log_bytes(server: SQLServer, target: ss.ScaleTarget, mode: str, calls: int, rng: Any) -> float:
    """Write-ahead log bytes the server wrote per call, in a pass of its own (not timed)."""
    indices = [rng.randrange(target.size) for _ in range(calls)]
    prepared, check = ss.prepare_calls(target, mode, indices)
    before = ss.log_position(server)
    answers = [call() for call in prepared]
    written = ss.log_position(server) - before
    check(answers)
    return written / calls


def _warm(targets: Sequence[ss.ScaleTarget], modes: Sequence[str], calls: int, rng: Any) -> None:
    for mode in modes:  # caches filled, connections made, statements prepared: untimed
        ss.time_interleaved(targets, mode, calls, rng, 0)


def _close(targets: Sequence[ss.ScaleTarget]) -> None:
    for target in targets:
        target.store.close()


def measure_store(
    kind: str, targets: list[ss.ScaleTarget], args: Any, server: SQLServer | None
) -> dict[str, Any]:
    """The timed rounds; on SQL also log bytes per call and (PostgreSQL) the scans caused."""
    rng = random.Random(f"{args.seed}:{kind}:measure")
    modes, sizes = MODES[kind], [t.size for t in targets]
    _warm(targets, modes, min(200, args.calls), rng)
    if server is not None:  # the scan statistics from fresh connections, before and after
        _close(targets)
        before = ss.pg_scans(server, sizes)
        _warm(targets, modes, 50, rng)
    per_round, order = ss.time_modes(targets, modes, args.rounds, args.calls, rng)
    result: dict[str, Any] = {
        "sizes": sizes,
        "modes": list(modes),
        "order": order,
        "stores": {str(t.size): {"load_seconds": t.load_seconds, **t.details} for t in targets},
        "summary": ss.summarize_scale(per_round, sizes),
    }
    if server is not None:
        calls = min(args.calls, 500)
        result["log_bytes_per_call"] = {
            str(t.size): {m: _log_bytes(server, t, m, calls, rng) for m in modes} for t in targets
        }
        _close(targets)
        after = ss.pg_scans(server, sizes)
        for size in set(before) & set(after):
            result["stores"][str(size)]["seq_scans"] = after[size][0] - before[size][0]
            result["stores"][str(size)]["index_scans"] = after[size][1] - before[size][1]
    return result


def measure_clear_expired(target: ss.ScaleTarget, count: int, seed: int) -> dict[str, Any]:
    """``count`` expired sessions added, then one ``clear_expired``; the live ones stay."""
    live = target.size
    tag, fraction = f"{target.tag}-expired", TOMBSTONES[target.kind]
    target.insert(ss.expired_sessions(tag, count, time.time(), seed, fraction))
    if target.count() != live + count:
        raise h.BenchmarkError("clear_expired: the expired sessions did not all arrive")
    started = time.perf_counter()
    removed = target.store.clear_expired(time.time(), batch_size=CLEAR_BATCH_SIZE)
    seconds = time.perf_counter() - started
    if removed != count or (left := target.count()) != live:
        raise h.BenchmarkError(f"clear_expired removed {removed} of {count}, {live} live ones")
    # The last batch finds fewer than a full one; when they divide evenly, one more finds none.
    batches = math.ceil(count / CLEAR_BATCH_SIZE) + (1 if count % CLEAR_BATCH_SIZE == 0 else 0)
    h.progress(f"clear_expired removed {removed:,} in {seconds:.2f} s")
    return {
        "live_sessions": live,
        "expired_sessions": count,
        "batch_size": CLEAR_BATCH_SIZE,
        "statements": batches,
        "seconds": seconds,
        "rows_per_second": removed / seconds,
        "ms_per_batch": seconds / batches * 1e3,
        "live_sessions_after": left,
    }


def run_store(kind: str, servers: h.Servers, args: Any) -> dict[str, Any]:
    """One kind of store: loaded in every size, measured, then ``clear_expired`` in the largest."""
    now, server = time.time(), servers.started.get(kind) if kind in (PG, MARIADB) else None
    targets: list[ss.ScaleTarget] = []
    try:
        for n, size in enumerate(args.scale_sizes, 1):
            targets.append(BUILDERS[kind](size, n, servers))
            targets[-1].load(now, args.seed)
        result = measure_store(kind, targets, args, server)
        if kind in TOMBSTONES:
            result["clear_expired"] = measure_clear_expired(targets[-1], args.expired, args.seed)
        return result
    finally:
        _close(targets)


def run_scale(args: Any, servers: h.Servers, skipped: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in MODES:
        if kind != "sqlite" and kind not in servers.started:
            skipped[f"scale:{kind}"] = servers.missing.get(kind, f"no {kind} server")
        else:
            result[kind] = run_store(kind, servers, args)
    return result


def evaluate_scale_goals(scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for kind in (k for k in (PG, MARIADB) if k in scale):
        result = scale[kind]
        largest, smallest = max(result["sizes"]), min(result["sizes"])
        for mode in result["modes"]:
            entry = result["summary"][str(largest)][mode]
            text = f"{kind} {mode}: latency with {largest:,} sessions <= {SCALE_GOAL}x that with"
            ratio, rounds = entry["ratio_to_smallest"], entry["round_ratios"]
            goals.append(
                h.goal_result(f"{text} {smallest:,}", ratio, SCALE_GOAL, True, round_ratios=rounds)
            )
    return goals


# -- the size part -------------------------------------------------------------------------------


def sized_login(size: int, seed: int) -> dict[str, Any]:
    """A logged-in user's values and ~``size`` bytes more, in random text values."""
    count = max(1, round(size / VALUE_BYTES))
    rng = random.Random(f"{seed}:size:{size}")
    text = (base64.urlsafe_b64encode(rng.randbytes(size // count)).decode() for _ in range(count))
    return {**h.LOGIN, **{f"v{i}": value[: size // count] for i, value in enumerate(text)}}


def start_size(variant: h.Variant, size: int, servers: h.Servers, seed: int) -> h.Running | str:
    """The variant logged in with a session of ``size`` and checked; or why not possible."""
    login = sized_login(size, seed)
    built = variant.build(servers, login)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Werkzeug's "cookie too large"
            running = h.Running(f"{variant.name} {_bytes(size)}", variant, built, SIZE_ENDPOINTS)
            running.verify(len(login) + 1)  # /keys is checked after /set has added "n"
        cookie = running.client.get_cookie("session")
        length = len(f"session={cookie.value if cookie else ''}")
        if variant.name != h.BASELINE or length <= COOKIE_LIMIT:
            return running
        built.close()
        return f"the cookie would be {length:,} bytes, over the {COOKIE_LIMIT:,}-byte limit"
    except BaseException:
        built.close()
        raise


def run_size(args: Any, servers: h.Servers, variants: list[h.Variant]) -> dict[str, Any]:
    """µs per request of each endpoint, per variant and session size, in interleaved rounds."""
    not_possible: dict[str, dict[str, str]] = {v.name: {} for v in variants}
    runnings: dict[tuple[str, int], h.Running] = {}
    with ExitStack() as stack:
        for variant, size in itertools.product(variants, args.session_sizes):
            running = start_size(variant, size, servers, args.seed)
            if isinstance(running, str):
                not_possible[variant.name][str(size)] = running
                continue
            stack.callback(running.built.close)
            running.calibrate(args.seconds, args.warmup)
            runnings[variant.name, size] = running
        h.run_rounds(list(runnings.values()), args.rounds, "size: ")
    summary: dict[str, Any] = {v.name: {} for v in variants}
    for (name, size), running in runnings.items():
        summary[name][str(size)] = {
            e: {"median_us": statistics.median(p.us), "min_us": min(p.us), "max_us": max(p.us)}
            for e, p in running.probes.items()
        }
    return {
        "sizes": list(args.session_sizes),
        "values": {str(s): len(sized_login(s, 0)) - len(h.LOGIN) for s in args.session_sizes},
        "endpoints": list(SIZE_ENDPOINTS),
        "requests_per_measurement": {r.name: r.batch for r in runnings.values()},
        "not_possible": not_possible,
        "raw_requests_per_second": {r.name: r.rates for r in runnings.values()},
        "summary": summary,
    }


# -- report --------------------------------------------------------------------------------------


def _bytes(size: int) -> str:
    return f"{size / 1000:g} KB"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _footprint(d: dict[str, Any]) -> str:
    if "file_bytes" in d:
        return f"{_mib(d['file_bytes'])} file"
    if "used_memory_added_bytes" in d:
        return f"{_mib(d['used_memory_added_bytes'])} memory ({d['bytes_per_session']} B/session)"
    return f"table {_mib(d['table_bytes'])}, indexes {_mib(d['index_bytes'])}"


LOAD_COLUMNS = rp.columns(
    "store: {store} | sessions: {size:,} | bulk load s: {load_seconds:.1f}"
    " | sessions/s: {rows_per_second:,}"
)
LOAD_COLUMNS += [("size", _footprint)]
LOAD_COLUMNS += rp.columns("seq scans / index scans while measured: {scans}")
LATENCY_COLUMNS = rp.columns(
    "store: {store} | mode: {mode} | sessions: {size:,} | median µs: {median_us:us}"
    " | p90 µs: {p90_us:us} | p99 µs: {p99_us:us}"
    " | round medians µs: {round_median_min_us:us}-{round_median_max_us:us}"
    " | vs smallest: {ratio_to_smallest:.2f}x | per round: {round_ratios:spread}"
    " | log bytes per call: {log:,.0f}"
)
SCALE_TEXT = (
    "Stores holding {sizes} live sessions in the store's own format, bulk loaded and analyzed"
    " (benchmarks/README.md says how). {rounds} rounds; in each, per kind of call, {calls:,}"
    " calls per store, the stores interleaved call by call, each call on a random session of"
    " its store, timed on its own. Median, p90, p99 over all calls; *round medians* the range"
    " of the per-round medians; *vs smallest* the median over the smallest store's, *per round*"
    " the same ratio round by round. *Log bytes per call*: write-ahead log the SQL server wrote"
    " per call (server-wide, in a pass after the timed rounds): a read writes none, a due touch"
    " its row and index entries (on PostgreSQL also full page images after a checkpoint)."
    " *Bulk load s* includes generating and analyzing."
)
CLEAR_NOTE = (
    "- {kind}: `clear_expired` of {expired_sessions:,} expired sessions ({tombstones:.0%} of"
    " them tombstones) added to the {live_sessions:,}-session store, batch size {batch_size:,}:"
    " **{seconds:.2f} s** ({rows_per_second:,.0f} rows/s, {statements} batches,"
    " {ms_per_batch:.1f} ms each); {live_sessions_after:,} live sessions left, as before."
)


def scale_sections(scale: dict[str, Any], settings: dict[str, Any]) -> list[rp.Section]:
    sizes = ", ".join(f"{s:,}" for s in settings["scale_sizes"])
    text = rp.FORMAT(SCALE_TEXT, (), {**settings, "sizes": sizes})
    rows = [
        {**part["summary"][str(size)][mode], "store": kind, "mode": mode, "size": size}
        | {"log": part.get("log_bytes_per_call", {}).get(str(size), {}).get(mode)}
        for kind, part in scale.items()
        for mode in part["modes"]
        for size in part["sizes"]
    ]
    loads = [
        {**d, "store": kind, "size": size}
        | {"scans": f"{d['seq_scans']} / {d['index_scans']:,}" if "seq_scans" in d else None}
        for kind, part in scale.items()
        for size in part["sizes"]
        for d in [part["stores"][str(size)]]
    ]
    notes = [
        rp.FORMAT(CLEAR_NOTE, (), {**part["clear_expired"], "kind": k, "tombstones": TOMBSTONES[k]})
        for k, part in scale.items()
        if "clear_expired" in part
    ]
    notes += ["- redis removes expired keys itself."] if "redis" in scale else []
    modes = [f"- **{mode}**: {text}" for mode, text in SCALE_MODE_TEXT.items()]
    return [
        rp.Section("Scale", [text], notes=modes),
        rp.Section(None, (), LATENCY_COLUMNS, "llrrrrrrrr", rows),
        rp.Section(None, (), LOAD_COLUMNS, "lrrrlr", loads, notes),
    ]


def _size_cell(size: str, row: dict[str, Any]) -> str:
    e = row.get(size, {}).get(row["endpoint"])
    return rp.FORMAT("{median_us:us} ({min_us:us}-{max_us:us})", (), e) if e else "n/a"


def size_section(part: dict[str, Any], settings: dict[str, Any]) -> rp.Section:
    values = ", ".join(f"{n} at {_bytes(int(s))}" for s, n in part["values"].items())
    text = (
        f"A logged-in session (user, cart) that also holds values of ~{VALUE_BYTES} bytes of"
        f" random text ({values}); µs per request through the test client, median of"
        f" {settings['rounds']} rounds (range in brackets), the variants and sizes interleaved."
        f" A cookie session over {COOKIE_LIMIT:,} bytes is not possible: n/a."
    )
    rows = [
        {"variant": variant, "endpoint": endpoint, **by_size}
        for variant, by_size in part["summary"].items()
        if by_size
        for endpoint in part["endpoints"]
    ]
    notes = [f"- **/{e}**: {text}" for e, text in SIZE_ENDPOINT_TEXT.items()]
    notes += [
        f"\nn/a: {variant} at {_bytes(int(size))}: {reason}."
        for variant, reasons in part["not_possible"].items()
        for size, reason in reasons.items()
    ]
    columns: list[tuple[str, rp.Cell]] = rp.columns("variant: {variant} | endpoint: /{endpoint}")
    columns += [(_bytes(s), functools.partial(_size_cell, str(s))) for s in part["sizes"]]
    align = "ll" + "r" * len(part["sizes"])
    return rp.Section("Session size", [text], columns, align, rows, notes)


def render_markdown(report: dict[str, Any]) -> str:
    intro = [
        f"{rp.machine_line(report)} {rp.load_line(report)}",
        *(f"\n**Skipped** {key}: {reason}" for key, reason in report["skipped"].items()),
    ]
    sections = scale_sections(report["scale"], report["settings"]) if report["scale"] else []
    sections.append(rp.Section("Goals", notes=rp.goal_lines(report["goals"])))
    sections.append(size_section(report["size"], report["settings"]))
    title = f"Scaling and session size ({report['date']})"
    return rp.render(title, intro, sections, report["command"])


def main(argv: Sequence[str]) -> int:
    args = rp.parse(__doc__, argv, rounds=5, seconds=0.15, warmup=0.1, quick=QUICK)
    vars(args).update({k: v for k, v in FULL.items() if k not in vars(args)})
    ss.check_row_format()
    record = rp.Record("scale", argv)
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp, ExitStack() as stack:
        servers = h.Servers(stack, Path(tmp))
        variants.start_servers(servers, ["redis", PG, MARIADB])
        size_variants = [variants.VARIANTS_BY_NAME[name] for name in SIZE_VARIANTS.split()]
        runnable, missing = variants.start_variants(servers, size_variants)
        skipped = {f"size:{name}": reason for name, reason in missing.items()}
        scale = run_scale(args, servers, skipped)
        size = run_size(args, servers, runnable)
    return record.finish(
        args,
        render_markdown,
        servers.versions,
        settings=vars(args) | SETTINGS,
        scale=scale,
        size=size,
        goals=evaluate_scale_goals(scale),
        skipped=skipped,
    )


if __name__ == "__main__":
    rp.run_main(main, "scale benchmark failed")
