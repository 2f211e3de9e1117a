"""PNG plots of the newest full benchmark results (never an ``--only`` run), next to them and
copied to docs/_static/bench/ without the date (benchmarks/README.md lists them).

    python benchmarks/plot.py                 # the newest runs
    python benchmarks/plot.py --date 2026-11-25
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: BENCH_RESULTS_DIR points plot.py at a trial run's results (and then leaves docs/ alone).
TRIAL_DIR = os.environ.get("BENCH_RESULTS_DIR")
RESULTS_DIR = Path(TRIAL_DIR or Path(__file__).resolve().parent / "results")
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "_static" / "bench"
#: One colour per store (ours on it, or the store alone), the same in every plot.
COLORS = {
    "cookie": "#7f7f7f",
    "memory": "#17becf",
    "sqlite": "#1f77b4",
    "redis": "#d62728",
    "memcached": "#8c564b",
    "postgresql": "#2ca02c",
    "mariadb": "#9467bd",
    "flask-session-sqlalchemy": "#aec7e8",
    "flask-session-redis": "#ff9896",
    "flask-session-sqlalchemy-postgresql": "#98df8a",
    "floor-redis": "#c49c94",
    "floor-postgresql": "#c5b0d5",
}
Bars = dict[tuple[str, str], tuple[float, float, float]]


def newest(kind: str, date: str | None) -> dict[str, Any] | None:
    """The newest full run of ``kind`` (on ``date`` if given), or None."""
    day = date or "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"  # never an --only run's file
    runs = sorted(RESULTS_DIR.glob(f"{day}-{kind}.json"))
    if not runs:
        print(f"no full {kind} run in {RESULTS_DIR}: its plot is skipped", file=sys.stderr)
        return None
    return dict(json.loads(runs[-1].read_text(encoding="utf-8")))


def _color(name: str) -> str:
    return COLORS.get(name.removeprefix("ours-"), "#333333")


def _grouped_bars(
    ax: Axes, groups: Sequence[str], series: Sequence[str], value: Bars, label: str
) -> None:
    """Bars per group (x) and series (colour); ``value`` gives (median, low, high)."""
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        entries = [(g, value[name, group]) for g, group in enumerate(groups)]
        xs = [g - 0.4 + width * (i + 0.5) for g, _ in entries]
        heights = [median for _, (median, _, _) in entries]
        errors = [[max(0.0, m - lo) for _, (m, lo, _) in entries]]
        errors.append([max(0.0, hi - m) for _, (m, _, hi) in entries])
        bars = ax.bar(xs, heights, width, label=name, color=_color(name))
        ax.errorbar(xs, heights, yerr=errors, fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.bar_label(bars, [label.format(h) for h in heights], fontsize=6, padding=2)
    ax.set_xticks(range(len(groups)), [f"/{g}" for g in groups])
    ax.grid(axis="y", alpha=0.3)


def plot_testclient(report: dict[str, Any]) -> Figure:
    """Requests per second as a ratio to the cookie session."""
    summary = report["summary"]
    variants = [v for v in summary if v != "cookie"]
    endpoints = list(next(iter(summary.values())))
    value: Bars = {}
    for variant, endpoint in itertools.product(variants, endpoints):
        entry = summary[variant][endpoint]
        rounds = entry.get("round_ratios") or [entry["ratio_to_cookie"]]
        value[variant, endpoint] = (entry["ratio_to_cookie"], min(rounds), max(rounds))
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    _grouped_bars(ax, endpoints, variants, value, "{:.2f}")
    ax.axhline(1.0, color=_color("cookie"), ls="--", lw=1, label="cookie = 1")
    ax.set_ylabel("requests/s, ratio to the cookie session (higher is better)")
    rounds = report["settings"]["rounds"]
    title = f"Test client, {report['date']}: median of {rounds} rounds, bars = range of same-round"
    ax.set_title(f"{title} ratios", fontsize=10)
    ax.legend(fontsize=8, ncols=3, loc="upper right")
    ax.set_ylim(0, max(1.15, max(v[2] for v in value.values()) * 1.15))
    return fig


def plot_http(report: dict[str, Any]) -> Figure:
    """Requests per second and p99 over real HTTP."""
    summary, settings = report["summary"], report["settings"]
    variants, endpoints = list(summary), list(next(iter(summary.values())))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, (low, median, high, bar_label), label, title in zip(
        fig.subplots(1, 2),
        (
            ("min_rps", "median_rps", "max_rps", "{:,.0f}"),
            ("p99_ms", "p99_ms", "p99_ms_max", "{:.1f}"),
        ),
        ("requests/s (higher is better)", "p99 latency, ms (lower is better)"),
        ("requests/s: median, range of rounds", "p99: median of rounds, bar up to the worst round"),
        strict=True,
    ):
        value = {
            (v, e): (summary[v][e][median], summary[v][e][low], summary[v][e][high])
            for v, e in itertools.product(variants, endpoints)
        }
        _grouped_bars(ax, endpoints, variants, value, bar_label)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
    fig.axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"HTTP, {report['date']}: gunicorn ({settings['workers']} sync workers) + wrk"
        f" ({settings['connections']} connections), 127.0.0.1",
        fontsize=11,
    )
    return fig


def _line(ax: Axes, name: str, points: Sequence[tuple[int, dict[str, Any]]], *keys: str) -> None:
    """A line through (x, entry) points: the entry's ``keys`` median, low and high, ranges as
    error bars; Flask-Session's dashed."""
    if points:
        xs = [x for x, _ in points]
        medians, lows, highs = ([entry[key] for _, entry in points] for key in keys)
        errors = [[m - lo for m, lo in zip(medians, lows, strict=True)]]
        errors.append([hi - m for m, hi in zip(medians, highs, strict=True)])
        style = "--o" if name.startswith("flask-session") else "-o"
        color = _color(name)
        ax.errorbar(xs, medians, yerr=errors, fmt=style, color=color, label=name, capsize=3, ms=4)


def _axes(fig: Figure, count: int, xlabel: str, log_y: bool) -> list[Axes]:
    axes: list[Axes] = list(fig.subplots(1, count, sharey=log_y))
    for ax in axes:
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    return axes


def plot_scaling(scale: dict[str, Any]) -> Figure:
    """Load latency against the number of stored sessions."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, mode, title in zip(
        _axes(fig, 2, "stored sessions", log_y=False),
        ("load", "testclient-get"),
        ("store.load (a read)", "GET /get, test client"),
        strict=True,
    ):
        for store, part in scale["scale"].items():
            points = [(int(s), e[mode]) for s, e in part["summary"].items() if mode in e]
            _line(ax, store, points, "median_us", "round_median_min_us", "round_median_max_us")
        ax.set_ylim(bottom=0)  # after the lines: it ends autoscaling
        ax.set_ylabel("median µs per call (lower is better)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Latency vs. stored sessions ({scale['date']}): median per call,"
        " bars = range of round medians",
        fontsize=11,
    )
    return fig


def plot_session_size(scale: dict[str, Any]) -> Figure:
    """Latency per request against the session's size, one panel per endpoint."""
    part = scale["size"]
    fig = Figure(figsize=(12, 4), layout="constrained")
    axes = _axes(fig, len(part["endpoints"]), "bytes of values in the session", log_y=True)
    for ax, endpoint in zip(axes, part["endpoints"], strict=True):
        for variant, by_size in part["summary"].items():
            entries = [(s, by_size.get(str(s), {}).get(endpoint)) for s in part["sizes"]]
            _line(ax, variant, [(s, e) for s, e in entries if e], "median_us", "min_us", "max_us")
        ax.axvline(scale["settings"]["cookie_limit"], color="#7f7f7f", ls=":", lw=1)
        ax.set_title(f"/{endpoint}", fontsize=10)
    axes[0].set_ylabel("µs per request (lower is better)")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Latency vs. session size, test client, {scale['date']} (dotted: the cookie size"
        " limit; the cookie session cannot go further)",
        fontsize=11,
    )
    return fig


#: Plot name -> the kind of run it reads, the part of that run it needs, how to draw it.
PLOTS: dict[str, tuple[str, str, Callable[[dict[str, Any]], Figure]]] = {
    "testclient": ("testclient", "summary", plot_testclient),
    "http": ("http", "summary", plot_http),
    "scaling": ("scale", "scale", plot_scaling),
    "session-size": ("scale", "size", plot_session_size),
}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", help="plot the runs of this date (YYYY-MM-DD), not the newest")
    args = parser.parse_args(argv)
    runs = {kind: newest(kind, args.date) for kind in ("testclient", "http", "scale")}
    written = 0
    for name, (kind, part, draw) in PLOTS.items():
        if (run := runs[kind]) and run.get(part):
            path = RESULTS_DIR / f"{run['date']}-{name}.png"
            # No timestamp in the file: the same results give the same bytes.
            draw(run).savefig(path, dpi=110, metadata={"Software": None})
            if not TRIAL_DIR:
                DOCS_DIR.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, DOCS_DIR / f"{name}.png")
            copied = "" if TRIAL_DIR else f" (and docs/_static/bench/{name}.png)"
            print(f"wrote {path}{copied}", file=sys.stderr)
            written += 1
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
