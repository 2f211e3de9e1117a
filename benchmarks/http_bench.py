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

import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis_counts
from harness import (
    HOST,
    USER,
    BenchmarkError,
    Servers,
    Unavailable,
    progress,
    redis_server,
    run_rounds,
    summarize,
)
from report import (
    Record,
    Section,
    arguments,
    choose,
    finish,
    machine_info,
    ratio,
    render,
    rows_of,
    run_main,
    skipped_section,
    spread,
)
from run import PACKAGES
from variants import VARIANTS_BY_NAME

HTTP_VARIANTS = ("cookie", "flask-session-redis", "ours-sqlite", "ours-redis")
HTTP_ENDPOINTS = ("get", "set")
#: Ours against the peer doing the same job, over HTTP.
HTTP_PEERS = (("ours-redis", "flask-session-redis"),)
APP = "variants:wsgi_app_from_env()"
WORKERS = 2
#: wrk's threads and connections.
THREADS, CONNECTIONS = 2, 8
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


# -- wrk -----------------------------------------------------------------------------------------


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of one ``wrk --latency`` run: req/s, p50 and p99 latency (ms), errors."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    percentiles = {
        int(match[1]): _ms(match[2], match[3])
        for match in re.finditer(r"^\s+(\d+)%\s+" + _DURATION + r"\s*$", output, re.M)
    }
    if rate is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchmarkError(f"wrk printed no rate or latency distribution (--latency):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read \d+, write \d+, timeout (\d+)", output)
    errors = sum(map(int, socket.groups())) if socket else 0
    return {
        "requests_per_second": float(rate[1]),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        # Every request must be answered, and answered 200: a failing server is not fast.
        "failed": (int(non_2xx[1]) if non_2xx else 0) + errors,
    }


def run_wrk(wrk: str, port: int, path: str, cookie: str, seconds: int) -> dict[str, Any]:
    argv = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    argv += ["-H", f"Cookie: {cookie}", f"http://{HOST}:{port}{path}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if result["failed"]:
        raise BenchmarkError(
            f"wrk on {path}: non-2xx responses, connect errors or timeouts:\n{done.stdout}"
        )
    return result


# -- the servers ---------------------------------------------------------------------------------


def _answers(port: int) -> bool:
    from http_server import request

    try:
        return request(f"http://{HOST}:{port}", "/none").status == 200
    except OSError:
        return False


@contextmanager
def gunicorn(name: str, workdir: Path, env: dict[str, str]) -> Iterator[int]:
    """gunicorn with WORKERS sync workers serving the variant on 127.0.0.1 and a free port,
    stopped by PID at the end (tests/servers.py's ServerProcess); its port."""
    from servers import ServerProcess, free_port

    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync"]
    argv += ["--bind", f"{HOST}:{port}", "--pythonpath", str(Path(__file__).resolve().parent)]
    argv += ["--log-level", "warning", APP]
    env = {**os.environ, **env}
    server = ServerProcess(
        f"gunicorn-{name}", argv, port, workdir, ready=lambda: _answers(port), env=env
    )
    server.start()
    try:
        progress(f"{name}: gunicorn PID {server.pid} on {HOST}:{port}")
        yield port
    finally:
        server.stop()


@dataclass
class Served:
    """One variant under gunicorn, and a browser (tests/http_server.py) holding a logged-in
    session's cookie."""

    name: str
    port: int
    wrk: str
    seconds: int
    browser: Any = None
    #: wrk's numbers per endpoint, round by round.
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def _get(self, browser: Any, path: str) -> str:
        """The body of ``GET path``; anything but 200 fails the run."""
        response = browser.get(path)
        if response.status != 200:
            raise BenchmarkError(f"{self.name}: GET {path} answered {response.status}")
        return str(response.text)

    def login(self) -> None:
        """Create the session wrk will use, and check that it reads and writes."""
        from http_server import Browser

        self.browser = Browser(f"http://{HOST}:{self.port}")
        if self._get(self.browser, "/login") != "ok" or not self.browser.jar:
            raise BenchmarkError(f"{self.name}: /login set no session cookie")
        self.verify()

    def verify(self) -> None:
        """The session cookie reads back the session; a write reads back (in a copy of the jar:
        the cookie session's /set changes the cookie, and wrk must send the logged-in one)."""
        got = self._get(self.browser, "/get")
        if got != USER:
            raise BenchmarkError(f"{self.name}: /get returned {got!r}, expected {USER!r}")
        trial = type(self.browser)(self.browser.base_url)
        trial.jar = dict(self.browser.jar)
        written, read_back = self._get(trial, "/set"), self._get(trial, "/n")
        if read_back != written:
            raise BenchmarkError(f"{self.name}: /set wrote {written!r}, /n read {read_back!r}")

    def wrk_all(self, seconds: int) -> dict[str, dict[str, Any]]:
        from http_server import cookie_header

        cookie = cookie_header(self.browser.jar) or ""
        return {e: run_wrk(self.wrk, self.port, "/" + e, cookie, seconds) for e in HTTP_ENDPOINTS}

    def calibrate(self, seconds: float, warmup: float) -> None:
        """wrk for ``warmup`` seconds on each endpoint, nothing recorded."""
        if warmup:
            self.wrk_all(int(warmup))

    def measure(self) -> None:
        for endpoint, result in self.wrk_all(self.seconds).items():
            self.results.setdefault(endpoint, []).append(result)


# -- the run -------------------------------------------------------------------------------------


def run(
    variants: Sequence[str], wrk: str, args: Any, servers: Servers
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[list[str]]]:
    served: list[Served] = []
    for name in variants:
        env = {"BENCH_VARIANT": name, "BENCH_DIR": str(servers.tmp / name)}
        (servers.tmp / name).mkdir()
        if "redis" in servers.started:
            env["BENCH_REDIS_PORT"] = str(servers.started["redis"])
        port = servers.stack.enter_context(gunicorn(name, servers.tmp / name, env))
        served.append(Served(name, port, wrk, args.duration))
    for item in served:
        item.login()
        item.calibrate(0, args.warmup)
    order = run_rounds(served, args.rounds)
    for item in served:
        item.verify()
    return {item.name: item.results for item in served}, order


def summarize_wrk(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per variant and endpoint: req/s (median, range, ratios to the cookie session, as in the
    test-client runs) and the median p50 and p99 latencies, with the worst round's p99."""
    rates = {
        v: {e: [r["requests_per_second"] for r in rs] for e, rs in by.items()}
        for v, by in raw.items()
    }
    summary = summarize(rates)
    return {
        variant: {
            endpoint: {
                "median_rps": summary[variant][endpoint]["median"],
                "min_rps": summary[variant][endpoint]["min"],
                "max_rps": summary[variant][endpoint]["max"],
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "p99_ms_max": max(r["p99_ms"] for r in results),
                "ratio_to_cookie": summary[variant][endpoint]["ratio_to_cookie"],
                "round_ratios": summary[variant][endpoint]["round_ratios"],
            }
            for endpoint, results in by_endpoint.items()
        }
        for variant, by_endpoint in raw.items()
    }


def compare(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "ours": ours,
            "peer": peer,
            "endpoint": endpoint,
            "rps_ratio": summary[ours][endpoint]["median_rps"]
            / summary[peer][endpoint]["median_rps"],
            "p99_ratio": summary[ours][endpoint]["p99_ms"] / summary[peer][endpoint]["p99_ms"],
        }
        for ours, peer in HTTP_PEERS
        if ours in summary and peer in summary
        for endpoint in HTTP_ENDPOINTS
    ]


HTTP_COLUMNS = (
    ("variant", "{variant}"),
    ("endpoint", "/{endpoint}"),
    ("median req/s", "{median_rps:,.0f}"),
    ("min-max", "{min_rps:,.0f}-{max_rps:,.0f}"),
    ("vs cookie", lambda e: ratio(e["ratio_to_cookie"])),
    ("per round", lambda e: spread(e["round_ratios"])),
    ("p50 ms", "{p50_ms:.2f}"),
    ("p99 ms", "{p99_ms:.2f}"),
    ("p99 worst", "{p99_ms_max:.2f}"),
)


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["settings"]
    packages = machine["packages"]
    intro = [
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
    ]
    text = (
        "Median over rounds of wrk's requests per second (min-max), and of its 50th and 99th"
        " latency percentiles (*p99 worst*: the worst round). *vs cookie* divides the median"
        " req/s by the cookie session's for the same endpoint in this run; *per round* is the"
        " range of that ratio round by round."
    )
    rows = rows_of(report["summary"], "variant", "endpoint")
    peers = [
        f"- /{c['endpoint']}: {c['ours']} serves {ratio(c['rps_ratio'])} the requests per second"
        f" of {c['peer']}, at {ratio(c['p99_ratio'])} its p99 latency"
        for c in report["comparisons"]
    ]
    sections = [
        Section(None, [text], HTTP_COLUMNS, "llrrrrrrr", rows),
        skipped_section(report["skipped"]),
        Section("Ours against Flask-Session" if peers else None, notes=peers),
    ]
    title = f"HTTP benchmark (gunicorn + wrk), {report['date']}"
    return render(title, intro, sections, report["command"])


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=3, warmup=1)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--only", help=f"comma-separated variants, of: {', '.join(HTTP_VARIANTS)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1, 0
    args.warmup = int(args.warmup)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be >= 1, --warmup >= 0")
    args.variants = choose(parser, args.only, HTTP_VARIANTS)
    return args


def tools() -> tuple[str, str]:
    """wrk's path and version; :class:`Unavailable` with the reason when a tool is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise Unavailable("wrk not installed (Debian package wrk; make bench installs it as root)")
    if importlib.util.find_spec("gunicorn") is None:
        raise Unavailable("gunicorn not installed: pip install --group bench (make bench does)")
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    output = (done.stdout or done.stderr).splitlines()
    return wrk, output[0].split(" [")[0] if output else "wrk"


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        wrk, wrk_version = tools()
    except Unavailable as exc:
        print(f"HTTP benchmark skipped: {exc}")
        return 0
    record = Record("http", argv)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        if any(VARIANTS_BY_NAME[name].needs for name in args.variants):
            servers.start("redis", lambda: redis_server(servers.tmp / "redis"))
        skipped = {
            n: servers.missing["redis"]
            for n in args.variants
            if VARIANTS_BY_NAME[n].needs and "redis" in servers.missing
        }
        variants = [name for name in args.variants if name not in skipped]
        raw, order = run(variants, wrk, args, servers)
        redis_version = None
        if "redis" in servers.started:
            redis_version = redis_counts.redis_version(servers.started["redis"])
    summary = summarize_wrk(raw)
    report = record.report(
        machine=machine_info(PACKAGES, redis_server=redis_version),
        settings={
            **vars(args),
            "threads": THREADS,
            "connections": CONNECTIONS,
            "workers": WORKERS,
            "wrk": wrk_version,
            "server": "gunicorn, sync workers, bound to 127.0.0.1",
            "variants": {name: VARIANTS_BY_NAME[name].description for name in variants},
            "endpoints": list(HTTP_ENDPOINTS),
        },
        skipped=skipped,
        order=order,
        raw=raw,
        summary=summary,
        comparisons=compare(summary),
    )
    suffix = "-only-" + "+".join(args.variants) if args.only else ""
    return finish(report, render_markdown(report), args.quick, suffix)


if __name__ == "__main__":
    run_main(main, "HTTP benchmark failed")
