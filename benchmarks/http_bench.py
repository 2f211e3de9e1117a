"""Requests per second and latency over real HTTP: the benchmark app under gunicorn (2 sync
workers), driven by wrk, both on 127.0.0.1.

Variants: Flask's cookie session, Flask-Session 0.8 on Redis, and Flask-ServerSession on SQLite
and on Redis, all served at once by their own gunicorn (the Redis ones on one redis-server the
run starts). Every wrk connection carries the cookie of a session created before the run, so
``/get`` reads and ``/set`` writes a logged-in user's session. Variants are interleaved round by
round; the numbers are medians over the rounds. See benchmarks/README.md.

    python benchmarks/http_bench.py               # what `make bench` runs after run.py
    python benchmarks/http_bench.py --quick       # smoke check: 1 round of 1 s, no files
    python benchmarks/http_bench.py --rounds 5 --duration 5 --only cookie,ours-redis
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_servers import (
    Unavailable,
    find_binary,
    gunicorn_process,
    http_get,
    redis_process,
    stopped_at_exit,
)
from harness import (
    BASELINE,
    USER,
    BenchmarkError,
    fmt_ratio,
    load_average,
    reproduce_lines,
    rotated,
    run_main,
    write_results,
)
from run import VARIANTS_BY_NAME, machine_info

HTTP_VARIANTS = ("cookie", "flask-session-redis", "ours-sqlite", "ours-redis")
HTTP_ENDPOINTS = ("get", "set")
#: Ours against the peer doing the same job, over HTTP.
HTTP_PEERS = (("ours-redis", "flask-session-redis"),)
APP = "run:wsgi_app_from_env()"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


# -- wrk -----------------------------------------------------------------------------------------


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of one ``wrk --latency`` run: req/s, latency percentiles (ms), errors."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in " + _DURATION, output, re.M)
    if rate is None or total is None:
        raise BenchmarkError(f"wrk printed something unexpected:\n{output}")
    percentiles = {
        int(match[1]): _ms(match[2], match[3])
        for match in re.finditer(r"^\s+(\d+)%\s+" + _DURATION + r"\s*$", output, re.M)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise BenchmarkError(f"wrk printed no latency distribution (--latency):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True))
        if socket
        else {}
    )
    return {
        "requests_per_second": float(rate[1]),
        "requests": int(total[1]),
        "seconds": _ms(total[2], total[3]) / 1e3,
        "p50_ms": percentiles[50],
        "p75_ms": percentiles.get(75),
        "p90_ms": percentiles.get(90),
        "p99_ms": percentiles[99],
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": errors,
    }


@dataclass(frozen=True)
class Load:
    """How wrk loads a server."""

    threads: int
    connections: int
    seconds: int


def run_wrk(wrk: str, port: int, path: str, cookie: str, load: Load) -> dict[str, Any]:
    argv = [
        wrk,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--latency",
        "-H",
        f"Cookie: {cookie}",
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=load.seconds + 60)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    errors = result["socket_errors"]
    # Every request must have been answered, and answered 200: a failing server is not fast.
    if result["non_2xx"] or errors.get("connect") or errors.get("timeout"):
        raise BenchmarkError(
            f"wrk on {path}: {result['non_2xx']} non-2xx responses, socket errors {errors}"
        )
    return result


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class Served:
    """One variant under gunicorn, with a logged-in session's cookie."""

    variant: str
    port: int
    cookie: str = ""


def _merge_cookies(cookie: str, set_cookies: list[str]) -> str:
    jar = dict(part.split("=", 1) for part in cookie.split("; ") if "=" in part)
    for header in set_cookies:
        name, _, value = header.split(";", 1)[0].partition("=")
        jar[name.strip()] = value.strip()
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def _get(served: Served, path: str, cookie: str) -> tuple[str, str]:
    """Body and the cookie after ``GET path``; anything but 200 fails the run."""
    status, body, set_cookies = http_get(served.port, path, cookie or None)
    if status != 200:
        raise BenchmarkError(f"{served.variant}: GET {path} answered {status}")
    return body, _merge_cookies(cookie, set_cookies)


def login(served: Served) -> None:
    """Create the session wrk will use, and check that it reads and writes."""
    body, cookie = _get(served, "/login", "")
    if body != "ok" or not cookie:
        raise BenchmarkError(f"{served.variant}: /login gave {body!r} and cookie {cookie!r}")
    served.cookie = cookie
    verify(served)


def verify(served: Served) -> None:
    """The session cookie reads back the session; a write reads back (in a copy of it)."""
    got, _ = _get(served, "/get", served.cookie)
    if got != USER:
        raise BenchmarkError(f"{served.variant}: /get returned {got!r}, expected {USER!r}")
    written, cookie = _get(served, "/set", served.cookie)
    read_back, _ = _get(served, "/n", cookie)
    if read_back != written:
        raise BenchmarkError(f"{served.variant}: /set wrote {written!r}, /n read {read_back!r}")


# -- the run -------------------------------------------------------------------------------------


def run(
    variants: Sequence[str],
    wrk: str,
    load: Load,
    rounds: int,
    warmup: int,
    tmp: Path,
    redis_port: int | None,
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[list[str]]]:
    with ExitStack() as stack:
        served: list[Served] = []
        for name in variants:
            env = {"BENCH_VARIANT": name, "BENCH_DIR": str(tmp / name)}
            (tmp / name).mkdir()
            if redis_port is not None:
                env["BENCH_REDIS_PORT"] = str(redis_port)
            server = gunicorn_process(sys.executable, APP, tmp / name, 2, env, name)
            stack.enter_context(stopped_at_exit(server))
            served.append(Served(name, server.port))
            print(f"{name}: gunicorn PID {server.pid} on 127.0.0.1:{server.port}", file=sys.stderr)
        for item in served:
            login(item)
        if warmup:
            for item in served:
                for endpoint in HTTP_ENDPOINTS:
                    run_wrk(
                        wrk,
                        item.port,
                        "/" + endpoint,
                        item.cookie,
                        Load(load.threads, load.connections, warmup),
                    )
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {
            item.variant: {endpoint: [] for endpoint in HTTP_ENDPOINTS} for item in served
        }
        order: list[list[str]] = []
        for round_index in range(rounds):
            this_round = rotated(served, round_index)
            order.append([item.variant for item in this_round])
            for item in this_round:
                for endpoint in HTTP_ENDPOINTS:
                    result = run_wrk(wrk, item.port, "/" + endpoint, item.cookie, load)
                    raw[item.variant][endpoint].append(result)
            print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
        for item in served:
            verify(item)
        return raw, order


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    base = raw.get(BASELINE)
    for name, by_endpoint in raw.items():
        summary[name] = {}
        for endpoint, results in by_endpoint.items():
            rates = [r["requests_per_second"] for r in results]
            entry: dict[str, Any] = {
                "median_rps": statistics.median(rates),
                "min_rps": min(rates),
                "max_rps": max(rates),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "p99_ms_max": max(r["p99_ms"] for r in results),
                "ratio_to_cookie": None,
                "round_ratios": None,
            }
            if base is not None:
                base_rates = [r["requests_per_second"] for r in base[endpoint]]
                entry["ratio_to_cookie"] = entry["median_rps"] / statistics.median(base_rates)
                entry["round_ratios"] = [r / b for r, b in zip(rates, base_rates, strict=True)]
            summary[name][endpoint] = entry
    return summary


def compare(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    comparisons = []
    for ours, peer in HTTP_PEERS:
        if ours not in summary or peer not in summary:
            continue
        for endpoint in HTTP_ENDPOINTS:
            mine, theirs = summary[ours][endpoint], summary[peer][endpoint]
            comparisons.append(
                {
                    "ours": ours,
                    "peer": peer,
                    "endpoint": endpoint,
                    "rps_ratio": mine["median_rps"] / theirs["median_rps"],
                    "p99_ratio": mine["p99_ms"] / theirs["p99_ms"],
                }
            )
    return comparisons


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    settings = report["settings"]
    lines = [
        f"# HTTP benchmark (gunicorn + wrk), {report['date']}",
        "",
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs;"
        f" gunicorn {packages['gunicorn']} ({settings['workers']} sync workers per variant),"
        f" {settings['wrk']}, redis-server {machine['redis_server'] or 'n/a'};"
        f" Flask {packages['flask']}, Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, redis-py {packages['redis']}.",
        f"`wrk -t{settings['threads']} -c{settings['connections']} -d{settings['duration']}s"
        f" --latency -H 'Cookie: <a logged-in session>'`, everything on 127.0.0.1;"
        f" {settings['rounds']} round(s), variants interleaved (rotated each round), after a"
        f" {settings['warmup']} s warm-up each; load average {report['load_average_before']}"
        f" before, {report['load_average_after']} after; {report['duration_seconds']:.0f} s"
        " in all.",
        "",
        "Median over rounds of wrk's requests per second (min-max), and of its 50th and 99th"
        " latency percentiles (*p99 worst*: the worst round). *vs cookie* divides the median"
        " req/s by the cookie session's for the same endpoint in this run; *per round* is the"
        " range of that ratio round by round.",
        "",
        "| variant | endpoint | median req/s | min-max | vs cookie | per round | p50 ms"
        " | p99 ms | p99 worst |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_endpoint in report["summary"].items():
        for endpoint, e in by_endpoint.items():
            rr = e["round_ratios"]
            spread = "n/a" if rr is None else f"{min(rr):.2f}-{max(rr):.2f}x"
            lines.append(
                f"| {name} | /{endpoint} | {e['median_rps']:,.0f}"
                f" | {e['min_rps']:,.0f}-{e['max_rps']:,.0f} | {fmt_ratio(e['ratio_to_cookie'])}"
                f" | {spread} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['p99_ms_max']:.2f} |"
            )
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        for name, reason in report["skipped"].items():
            lines.append(f"- **{name}** skipped: {reason}")
    if report["comparisons"]:
        lines += ["", "## Ours against Flask-Session", ""]
        for c in report["comparisons"]:
            lines.append(
                f"- /{c['endpoint']}: {c['ours']} serves {fmt_ratio(c['rps_ratio'])} the"
                f" requests per second of {c['peer']}, at {fmt_ratio(c['p99_ratio'])} its p99"
                " latency"
            )
    lines += reproduce_lines(report["command"], "python benchmarks/http_bench.py")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of wrk per endpoint first (default 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--only", help=f"comma-separated variants, of: {', '.join(HTTP_VARIANTS)}")
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 1 round of 1 s, writes no files"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1, 0
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be >= 1, --warmup >= 0")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(HTTP_VARIANTS)
    unknown = [n for n in names if n not in HTTP_VARIANTS]
    if unknown or not names:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(HTTP_VARIANTS)}")
    args.variants = list(dict.fromkeys(names))
    return args


def tools() -> tuple[str, str]:
    """wrk's path and version; :class:`Unavailable` with the reason when a tool is missing."""
    wrk = find_binary("wrk")
    if wrk is None:
        raise Unavailable("wrk not installed (Debian package wrk; make bench installs it as root)")
    if importlib.util.find_spec("gunicorn") is None:
        raise Unavailable("gunicorn not installed: pip install --group bench (make bench does)")
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    version = (
        (done.stdout or done.stderr).splitlines()[0].split(" [")[0]
        if (done.stdout or done.stderr)
        else "wrk"
    )
    return wrk, version


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        wrk, wrk_version = tools()
    except Unavailable as exc:
        print(f"HTTP benchmark skipped: {exc}")
        return 0

    load = Load(args.threads, args.connections, args.duration)
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    load_before = load_average()
    clock = time.perf_counter()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        redis_port = None
        if any(VARIANTS_BY_NAME[name].needs_redis for name in args.variants):
            try:
                server = redis_process(tmp / "redis")
            except Unavailable as exc:
                skipped = {n: str(exc) for n in args.variants if VARIANTS_BY_NAME[n].needs_redis}
                for name, reason in skipped.items():
                    print(f"{name} skipped: {reason}", file=sys.stderr)
            else:
                stack.enter_context(stopped_at_exit(server))
                redis_port = server.port
        variants = [name for name in args.variants if name not in skipped]
        raw, order = run(variants, wrk, load, args.rounds, args.warmup, tmp, redis_port)
        machine = machine_info(redis_port)
    duration = time.perf_counter() - clock

    summary = summarize(raw)
    report: dict[str, Any] = {
        "benchmark": "http",
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/http_bench.py", *argv]),
        "machine": machine,
        "settings": {
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "threads": args.threads,
            "connections": args.connections,
            "workers": 2,
            "wrk": wrk_version,
            "server": "gunicorn, sync workers, bound to 127.0.0.1",
            "variants": {name: VARIANTS_BY_NAME[name].description for name in variants},
            "endpoints": list(HTTP_ENDPOINTS),
            "quick": args.quick,
        },
        "skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "duration_seconds": round(duration, 1),
        "order": order,
        "raw": raw,
        "summary": summary,
        "comparisons": compare(summary),
    }
    markdown = render_markdown(report)
    print(markdown)
    if args.quick:
        print("(--quick: smoke check only, no result files written)")
    else:
        stem = f"{report['date']}-http"
        if args.only:
            stem += "-only-" + "+".join(args.variants)
        write_results(stem, report, markdown)
    return 0


if __name__ == "__main__":
    run_main(main, "HTTP benchmark failed")
