"""Requests per second and latency over real HTTP: each variant under its own gunicorn (2 sync
workers), driven by wrk with a logged-in session's cookie, all on 127.0.0.1; variants
interleaved round by round, medians over the rounds. See benchmarks/README.md.

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
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness as h
import report as rp
from variants import VARIANTS_BY_NAME, start_variants

HTTP_VARIANTS = ("cookie", "flask-session-redis", "ours-sqlite", "ours-redis")
HTTP_ENDPOINTS = ("get", "set")
#: Ours against the peer doing the same job, over HTTP.
HTTP_PEERS = (("ours-redis", "flask-session-redis"),)
APP = "variants:wsgi_app_from_env()"
WORKERS = 2
#: wrk's threads and connections.
THREADS, CONNECTIONS = 2, 8
_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of one ``wrk --latency`` run: req/s, p50 and p99 latency (ms), errors."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    percentiles = {
        int(match[1]): float(match[2]) * _MS[match[3]]
        for match in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    if rate is None or 50 not in percentiles or 99 not in percentiles:
        raise h.BenchmarkError(f"wrk printed no rate or latency distribution:\n{output}")
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
    argv += ["-H", f"Cookie: {cookie}", f"http://{h.HOST}:{port}{path}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise h.BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if result["failed"]:
        raise h.BenchmarkError(f"wrk on {path}: non-2xx, connect errors, timeouts:\n{done.stdout}")
    return result


def _answers(port: int) -> bool:
    from http_server import request

    try:
        return bool(request(f"http://{h.HOST}:{port}", "/none").status == 200)
    except OSError:
        return False


def gunicorn(name: str, workdir: Path, env: dict[str, str], stack: ExitStack) -> int:
    """gunicorn serving the variant on 127.0.0.1 and a free port, stopped by PID; its port."""
    from servers import ServerProcess, free_port

    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync"]
    argv += ["--bind", f"{h.HOST}:{port}", "--pythonpath", str(Path(__file__).resolve().parent)]
    argv += ["--log-level", "warning", APP]
    server = ServerProcess(
        f"gunicorn-{name}", argv, port, workdir, ready=lambda: _answers(port), env=os.environ | env
    )
    server.start()
    stack.callback(server.stop)
    h.progress(f"{name}: gunicorn PID {server.pid} on {h.HOST}:{port}")
    return port


@dataclass
class Served:
    """One variant under gunicorn; a browser holds the logged-in cookie every wrk run sends."""

    name: str
    port: int
    wrk: str
    seconds: int
    browser: Any = None
    #: wrk's numbers per endpoint, round by round.
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from http_server import Browser

        self.browser = Browser(f"http://{h.HOST}:{self.port}")
        if self.browser.get("/login").text != "ok" or not self.browser.jar:
            raise h.BenchmarkError(f"{self.name}: /login set no session cookie")
        self.verify()

    def verify(self) -> None:
        """The session checked in a copy of the jar: wrk must send the logged-in cookie."""
        trial = type(self.browser)(self.browser.base_url)
        trial.jar = dict(self.browser.jar)

        def get(path: str) -> str:
            response = trial.get(path)
            if response.status != 200:
                raise h.BenchmarkError(f"{self.name}: GET {path} answered {response.status}")
            return str(response.text)

        h.check_session(self.name, get)

    def wrk_all(self, seconds: int) -> dict[str, dict[str, Any]]:
        from http_server import cookie_header

        cookie = cookie_header(self.browser.jar) or ""
        return {e: run_wrk(self.wrk, self.port, "/" + e, cookie, seconds) for e in HTTP_ENDPOINTS}

    def measure(self) -> None:
        for endpoint, result in self.wrk_all(self.seconds).items():
            self.results.setdefault(endpoint, []).append(result)


def run(variants: Sequence[str], wrk: str, args: Any, servers: h.Servers) -> dict[str, Any]:
    served: list[Served] = []
    for name in variants:
        (workdir := servers.tmp / name).mkdir()
        env = {"BENCH_VARIANT": name, "BENCH_DIR": str(workdir)}
        if "redis" in servers.started:
            env["BENCH_REDIS_PORT"] = str(servers.started["redis"])
        port = gunicorn(name, workdir, env, servers.stack)
        served.append(Served(name, port, wrk, args.duration))
    for item in served if args.warmup else ():
        item.wrk_all(int(args.warmup))  # a warm-up, nothing recorded
    order = h.run_rounds(served, args.rounds)
    for item in served:
        item.verify()
    return {"raw": {item.name: item.results for item in served}, "order": order}


def summarize_wrk(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per variant and endpoint: req/s as in run.py, median p50 and p99, worst p99."""
    rates = {
        v: {e: [r["requests_per_second"] for r in rs] for e, rs in by.items()}
        for v, by in raw.items()
    }
    summary = h.summarize(rates)
    for variant, endpoint, rounds in ((v, e, rs) for v, by in raw.items() for e, rs in by.items()):
        entry, p99 = summary[variant][endpoint], [r["p99_ms"] for r in rounds]
        del entry["extra_us_per_request"]  # the rest as in run.py, req/s named so
        entry |= {f"{k}_rps": entry.pop(k) for k in ("median", "min", "max")}
        entry |= {"p50_ms": statistics.median(r["p50_ms"] for r in rounds), "p99_ms_max": max(p99)}
        entry["p99_ms"] = statistics.median(p99)
    return summary


def compare(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours against its peer per endpoint: the ratios of median req/s and of p99 latency."""
    ratios = {"rps_ratio": "median_rps", "p99_ratio": "p99_ms"}
    return [
        {"ours": ours, "peer": peer, "endpoint": e}
        | {name: summary[ours][e][key] / summary[peer][e][key] for name, key in ratios.items()}
        for ours, peer in HTTP_PEERS
        if ours in summary and peer in summary
        for e in HTTP_ENDPOINTS
    ]


HTTP_COLUMNS = rp.columns(
    "variant: {variant} | endpoint: /{endpoint} | median req/s: {median_rps:,.0f} | min-max:"
    " {min_rps:,.0f}-{max_rps:,.0f} | vs cookie: {ratio_to_cookie:x} | per round:"
    " {round_ratios:spread} | p50 ms: {p50_ms:.2f} | p99 ms: {p99_ms:.2f} | p99 worst:"
    " {p99_ms_max:.2f}"
)
HTTP_TEXT = (
    "Median over rounds of wrk's requests per second (min-max), and of its 50th and 99th"
    " latency percentiles (*p99 worst*: the worst round). *vs cookie* divides the median"
    " req/s by the cookie session's for the same endpoint in this run; *per round* is the"
    " range of that ratio round by round."
)
PEER_LINE = (
    "- /{endpoint}: {ours} serves {rps_ratio:x} the requests per second of {peer}, at"
    " {p99_ratio:x} its p99 latency"
)


def render_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    intro = [
        rp.machine_line(report),
        f"{settings['wrk']}, {settings['workers']} gunicorn sync workers per variant;"
        f" `wrk -t{settings['threads']} -c{settings['connections']} -d{settings['duration']}s"
        f" --latency -H 'Cookie: <a logged-in session>'`, everything on 127.0.0.1;"
        f" {settings['rounds']} round(s), variants interleaved (rotated each round), after a"
        f" {settings['warmup']} s warm-up each; {rp.load_line(report)}",
    ]
    rows = rp.rows_of(report["summary"], "variant", "endpoint")
    peers = [rp.FORMAT(PEER_LINE, (), c) for c in report["comparisons"]]
    sections = [
        rp.Section(None, [HTTP_TEXT], HTTP_COLUMNS, "llrrrrrrr", rows),
        rp.skipped_section(report["skipped"]),
        rp.Section("Ours against Flask-Session" if peers else None, notes=peers),
    ]
    title = f"HTTP benchmark (gunicorn + wrk), {report['date']}"
    return rp.render(title, intro, sections, report["command"])


def wrk_version() -> tuple[str | None, str]:
    """wrk's path and version; no path, and why, when wrk or gunicorn is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None, "wrk not installed (Debian package wrk; make bench installs it as root)"
    if importlib.util.find_spec("gunicorn") is None:
        return None, "gunicorn not installed: pip install --group bench (make bench does)"
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    output = (done.stdout or done.stderr).splitlines()
    return wrk, output[0].split(" [")[0] if output else "wrk"


def main(argv: Sequence[str]) -> int:
    quick = {"rounds": 1, "duration": 1, "warmup": 0}
    args = rp.parse(__doc__, argv, rounds=3, duration=5, warmup=1, only=HTTP_VARIANTS, quick=quick)
    wrk, version = wrk_version()
    if wrk is None:
        print(f"HTTP benchmark skipped: {version}")
        return 0
    record = rp.Record("http", argv)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, ExitStack() as stack:
        servers = h.Servers(stack, Path(tmp))
        variants, skipped = start_variants(servers, [VARIANTS_BY_NAME[n] for n in args.variants])
        results = run([v.name for v in variants], wrk, args, servers)
    summary = summarize_wrk(results["raw"])
    settings = {"threads": THREADS, "connections": CONNECTIONS, "workers": WORKERS, "wrk": version}
    settings["server"] = "gunicorn, sync workers, bound to 127.0.0.1"
    settings |= {"endpoints": HTTP_ENDPOINTS, "variants": {v.name: v.description for v in variants}}
    return record.finish(
        args,
        render_markdown,
        servers.versions,
        settings=vars(args) | settings,
        skipped=skipped,
        **results,
        summary=summary,
        comparisons=compare(summary),
    )


if __name__ == "__main__":
    rp.run_main(main, "HTTP benchmark failed")
