"""PNG plots of the newest full benchmark results, for the README and the docs.

Reads the newest full run of each kind in benchmarks/results (``<date>-testclient.json``,
``<date>-http.json``, ``<date>-scale.json``; never an ``--only`` run) and
writes next to them:

- ``<date>-testclient.png``: requests per second as a ratio to the cookie session, per variant
  and endpoint (median, with the range of the same-round ratios);
- ``<date>-http.png``: requests per second and p99 latency over HTTP (gunicorn + wrk);
- ``<date>-scaling.png``: load latency against the number of stored sessions, every store;
- ``<date>-session-size.png``: latency per request against the session's size.

Each plot is also copied to docs/_static/bench/ under a name without the date, which
docs/benchmarks.md shows. A plot whose input is missing is skipped with a message.

    python benchmarks/plot.py                 # the newest runs
    python benchmarks/plot.py --date 2026-11-25
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: BENCH_RESULTS_DIR points plot.py at a trial run's results (and then leaves docs/ alone).
TRIAL_DIR = os.environ.get("BENCH_RESULTS_DIR")
RESULTS_DIR = Path(TRIAL_DIR or Path(__file__).resolve().parent / "results")
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "_static" / "bench"
KINDS = ("testclient", "http", "scale")
#: One colour per variant or store, the same in every plot.
COLORS = {
    "cookie": "#7f7f7f",
    "ours-memory": "#17becf",
    "ours-sqlite": "#1f77b4",
    "ours-redis": "#d62728",
    "ours-memcached": "#8c564b",
    "ours-postgresql": "#2ca02c",
    "ours-mariadb": "#9467bd",
    "flask-session-sqlalchemy": "#aec7e8",
    "flask-session-redis": "#ff9896",
    "flask-session-sqlalchemy-postgresql": "#98df8a",
    "sqlite": "#1f77b4",
    "redis": "#d62728",
    "postgresql": "#2ca02c",
    "mariadb": "#9467bd",
}
DPI = 110


def newest(kind: str, date: str | None) -> Path | None:
    """The newest full run of ``kind`` (on ``date`` if given), or None."""
    pattern = re.compile(rf"(\d{{4}}-\d{{2}}-\d{{2}})-{kind}\.json")
    runs = sorted(
        path
        for path in RESULTS_DIR.glob(f"*-{kind}.json")
        if (match := pattern.fullmatch(path.name)) and (date is None or match[1] == date)
    )
    return runs[-1] if runs else None


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _color(name: str) -> str:
    return COLORS.get(name, "#333333")


def _save(fig: Figure, date: str, name: str) -> Path:
    path = RESULTS_DIR / f"{date}-{name}.png"
    # No timestamp in the file: the same results give the same bytes.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    if TRIAL_DIR:
        print(f"wrote {path}", file=sys.stderr)
        return path
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_DIR / f"{name}.png")
    print(f"wrote {path} (and docs/_static/bench/{name}.png)", file=sys.stderr)
    return path


def _grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[str],
    value: dict[tuple[str, str], tuple[float, float, float] | None],
    label_format: str,
) -> None:
    """Bars per group (x) and series (colour); ``value`` gives (median, low, high) or None."""
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        xs, heights, lows, highs = [], [], [], []
        for g, group in enumerate(groups):
            entry = value.get((name, group))
            if entry is None:
                continue
            median, low, high = entry
            xs.append(g - 0.4 + width * (i + 0.5))
            heights.append(median)
            lows.append(max(0.0, median - low))
            highs.append(max(0.0, high - median))
        bars = ax.bar(xs, heights, width, label=name, color=_color(name))
        ax.errorbar(xs, heights, yerr=[lows, highs], fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.bar_label(bars, [label_format.format(h) for h in heights], fontsize=6, padding=2)
    ax.set_xticks(range(len(groups)), [f"/{g}" for g in groups])
    ax.grid(axis="y", alpha=0.3)


def plot_testclient(report: dict[str, Any]) -> Figure:
    """(a) requests per second as a ratio to the cookie session."""
    summary = report["summary"]
    variants = [v for v in summary if v != "cookie"]
    endpoints = list(next(iter(summary.values())))
    value: dict[tuple[str, str], tuple[float, float, float] | None] = {}
    for variant in variants:
        for endpoint in endpoints:
            entry = summary[variant][endpoint]
            rounds = entry.get("round_ratios") or [entry["ratio_to_cookie"]]
            value[variant, endpoint] = (entry["ratio_to_cookie"], min(rounds), max(rounds))
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    _grouped_bars(ax, endpoints, variants, value, "{:.2f}")
    ax.axhline(1.0, color=_color("cookie"), ls="--", lw=1, label="cookie = 1")
    ax.set_ylabel("requests/s, ratio to the cookie session (higher is better)")
    ax.set_title(
        f"Test client, {report['date']}: median of {report['settings']['rounds']} rounds,"
        " bars = range of same-round ratios",
        fontsize=10,
    )
    ax.legend(fontsize=8, ncols=3, loc="upper right")
    ax.set_ylim(0, max(1.15, max(v[2] for v in value.values() if v) * 1.15))
    return fig


def plot_http(report: dict[str, Any]) -> Figure:
    """(b) requests per second and p99 over real HTTP."""
    summary = report["summary"]
    variants = list(summary)
    endpoints = list(next(iter(summary.values())))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    rps_ax, p99_ax = fig.subplots(1, 2)
    rps: dict[tuple[str, str], tuple[float, float, float] | None] = {
        (v, e): (summary[v][e]["median_rps"], summary[v][e]["min_rps"], summary[v][e]["max_rps"])
        for v in variants
        for e in endpoints
    }
    _grouped_bars(rps_ax, endpoints, variants, rps, "{:,.0f}")
    rps_ax.set_ylabel("requests/s (higher is better)")
    rps_ax.set_title("requests/s: median, range of rounds", fontsize=10)
    p99: dict[tuple[str, str], tuple[float, float, float] | None] = {
        (v, e): (summary[v][e]["p99_ms"], summary[v][e]["p99_ms"], summary[v][e]["p99_ms_max"])
        for v in variants
        for e in endpoints
    }
    _grouped_bars(p99_ax, endpoints, variants, p99, "{:.1f}")
    p99_ax.set_ylabel("p99 latency, ms (lower is better)")
    p99_ax.set_title("p99: median of rounds, bar up to the worst round", fontsize=10)
    settings = report["settings"]
    fig.suptitle(
        f"HTTP, {report['date']}: gunicorn ({settings['workers']} sync workers) + wrk"
        f" ({settings['connections']} connections), 127.0.0.1",
        fontsize=11,
    )
    rps_ax.legend(fontsize=8, loc="lower right")
    return fig


def _line(ax: Axes, name: str, points: Sequence[tuple[int, float, float, float]]) -> None:
    """One line of (x, median, low, high) points, the range as error bars."""
    if points:
        xs, medians, lows, highs = zip(*points, strict=True)
        errors = [[m - lo for m, lo in zip(medians, lows, strict=True)]]
        errors.append([hi - m for m, hi in zip(medians, highs, strict=True)])
        ax.errorbar(
            xs,
            medians,
            yerr=errors,
            fmt="--o" if name.startswith("flask-session") else "-o",
            color=_color(name),
            label=name,
            capsize=3,
            ms=4,
        )


def plot_scaling(scale: dict[str, Any]) -> Figure:
    """(c) load latency against the number of stored sessions."""
    parts: dict[str, dict[str, Any]] = scale["scale"]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    load_ax, get_ax = fig.subplots(1, 2)
    for ax, mode, title in (
        (load_ax, "load", "store.load (a read)"),
        (get_ax, "testclient-get", "GET /get, test client"),
    ):
        for store, part in parts.items():
            entries = [(int(s), e[mode]) for s, e in part["summary"].items() if mode in e]
            points = [
                (s, e["median_us"], e["round_median_min_us"], e["round_median_max_us"])
                for s, e in entries
            ]
            _line(ax, store, points)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("stored sessions")
        ax.set_ylabel("median µs per call (lower is better)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Latency vs. stored sessions ({scale['date']}): median per call,"
        " bars = range of round medians",
        fontsize=11,
    )
    return fig


def plot_session_size(scale: dict[str, Any]) -> Figure:
    """(d) latency per request against the session's size."""
    part = scale["size"]
    sizes: list[int] = part["sizes"]
    endpoints: list[str] = part["endpoints"]
    fig = Figure(figsize=(12, 4), layout="constrained")
    axes = fig.subplots(1, len(endpoints), sharey=True)
    for ax, endpoint in zip(axes, endpoints, strict=True):
        for variant, by_size in part["summary"].items():
            entries = [(s, by_size[str(s)][endpoint]) for s in sizes if str(s) in by_size]
            points = [(s, e["median_us"], e["min_us"], e["max_us"]) for s, e in entries if e]
            _line(ax, variant, points)
        ax.axvline(scale["settings"]["cookie_limit"], color="#7f7f7f", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes of values in the session")
        ax.set_title(f"/{endpoint}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("µs per request (lower is better)")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Latency vs. session size, test client, {scale['date']} (dotted: the cookie size"
        " limit; the cookie session cannot go further)",
        fontsize=11,
    )
    return fig


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", help="plot the runs of this date (YYYY-MM-DD), not the newest")
    args = parser.parse_args(argv)
    paths = {kind: newest(kind, args.date) for kind in KINDS}
    reports = {kind: load(path) for kind, path in paths.items() if path is not None}
    for kind, path in paths.items():
        if path is None:
            print(f"no full {kind} run in {RESULTS_DIR}: its plot is skipped", file=sys.stderr)
    written: list[Path] = []
    if "testclient" in reports:
        r = reports["testclient"]
        written.append(_save(plot_testclient(r), r["date"], "testclient"))
    if "http" in reports:
        r = reports["http"]
        if r.get("summary"):
            written.append(_save(plot_http(r), r["date"], "http"))
    scale = reports.get("scale")
    if scale and scale.get("scale"):
        written.append(_save(plot_scaling(scale), scale["date"], "scaling"))
    if scale and scale.get("size"):
        written.append(_save(plot_session_size(scale), scale["date"], "session-size"))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
