"""The one Markdown renderer (a report's sections -> Markdown tables), what every run records and
writes (``results/<date>-<kind>.json`` and ``.md``), and the command line every benchmark shares.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import sqlite3
import string
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import BenchmarkError, progress

#: The packages whose versions a report records.
PACKAGES = "flask werkzeug itsdangerous flask-serversession flask-session flask-sqlalchemy"
PACKAGES += " sqlalchemy msgspec redis gunicorn psycopg pymysql pymemcache"
#: Where results go; BENCH_RESULTS_DIR points a trial run elsewhere (plot.py reads it too).
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")


def spread(values: Sequence[float] | None) -> str:
    return f"{min(values):.2f}-{max(values):.2f}x" if values else "n/a"


def us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


#: Format specs of the renderer's own, beside Python's: ``{ratio_to_cookie:x}`` -> ``1.23x``.
FORMATS: dict[str, Callable[[Any], str]] = {
    "x": lambda value: f"{value:.2f}x",
    "spread": spread,
    "us": us,
    "counts": lambda items: ", ".join(f"{name} {n}" for name, n in items.items()) or "-",
}


class _Formatter(string.Formatter):
    """``str.format`` with :data:`FORMATS`, and ``n/a`` for a value that is None."""

    def format_field(self, value: Any, spec: str) -> str:
        if value is None:
            return "n/a"
        return FORMATS[spec](value) if spec in FORMATS else format(value, spec)


FORMAT = _Formatter().vformat
#: A table cell: a format string applied to the row (``"{median:,.0f}"``), or a function of it.
Cell = str | Callable[[dict[str, Any]], object]


def columns(spec: str) -> list[tuple[str, Cell]]:
    """Columns from ``"title: {format} | title: {format} ..."``."""
    return [(t, cell) for t, cell in (col.strip().split(": ", 1) for col in spec.split(" | "))]


@dataclass
class Section:
    """A heading (``#`` first for a level down), paragraphs, a table of ``rows``, notes."""

    heading: str | None = None
    text: Sequence[str] = ()
    columns: Sequence[tuple[str, Cell]] = ()
    align: str = ""
    rows: Sequence[dict[str, Any]] = ()
    notes: Sequence[str] = ()


def rows_of(nested: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    """Rows of nested results: ``{a: {b: entry}}`` -> ``[{**entry, names[0]: a, names[1]: b}]``."""
    if not names:
        return [nested]
    return [
        {**row, names[0]: k} for k, inner in nested.items() for row in rows_of(inner, *names[1:])
    ]


def _table(part: Section) -> list[str]:
    def cell(spec: Cell, row: dict[str, Any]) -> str:
        return FORMAT(spec, (), row) if isinstance(spec, str) else str(spec(row))

    lines = ["", "| " + " | ".join(title for title, _ in part.columns) + " |"]
    lines.append("|" + "|".join({"l": "---", "r": "---:"}[a] for a in part.align) + "|")
    return lines + [
        "| " + " | ".join(cell(c, row) for _, c in part.columns) + " |" for row in part.rows
    ]


def render(title: str, intro: Sequence[str], sections: Iterable[Section], command: str) -> str:
    """The Markdown of a report: title, intro lines, sections, and how to reproduce it."""
    lines = [f"# {title}", "", *intro]
    for part in sections:
        if part.heading:
            lines += ["", f"{'#' * (2 + part.heading.count('#'))} {part.heading.lstrip('#')}"]
        for paragraph in part.text:
            lines += ["", paragraph]
        if part.columns and part.rows:
            lines += _table(part)
        if part.notes:
            lines += ["", *part.notes]
    make = ["make bench"] if len(command.split()) == 2 else []  # it runs each without options
    return "\n".join([*lines, "", "## Reproduce", "", "```sh", *make, command, "```", ""])


def goal_lines(goals: Iterable[dict[str, Any]]) -> list[str]:
    lines = []
    for goal in goals:
        measured = FORMAT("measured {ratio:x}", (), goal)
        if goal.get("round_ratios"):
            measured += f", per round {spread(goal['round_ratios'])}"
        if goal.get("floor"):
            measured += FORMAT("; {floor} {floor_ratio:x} in this run", (), goal)
        if goal.get("not_measured_because"):
            measured += f"; {goal['not_measured_because']}"
        lines.append(f"- **{goal['status']}**: {goal['goal']} ({measured})")
    return lines


def skipped_section(skipped: dict[str, str]) -> Section:
    notes = [f"- **{name}** skipped: {reason}" for name, reason in skipped.items()]
    return Section("Skipped" if skipped else None, notes=notes)


def load_line(report: dict[str, Any]) -> str:
    return (
        f"load average {report['load_average_before']} before, {report['load_average_after']}"
        f" after; {report['duration_seconds']:.0f} s in all."
    )


# -- the run's record ----------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_line(report: dict[str, Any]) -> str:
    """The machine, the servers and the packages of a run, in one line."""
    machine = report["machine"]
    servers = "".join(f", {name} {version}" for name, version in machine["servers"].items())
    packages = ", ".join(f"{name} {v}" for name, v in machine["packages"].items() if v)
    return (
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs,"
        f" SQLite {machine['sqlite']}{servers} (started by the run on 127.0.0.1); {packages}."
    )


class Record:
    """What every report starts with: date, command, machine, load averages, duration."""

    def __init__(self, kind: str, argv: Sequence[str]) -> None:
        self.kind, self.packages = kind, PACKAGES.split()
        self.started = dt.datetime.now(dt.timezone.utc).astimezone()
        self.load_before = _load_average()
        self.clock = time.perf_counter()
        script = f"benchmarks/{Path(sys.argv[0]).name}"
        self.command = " ".join(["python", script, *map(shlex.quote, argv)])

    def finish(
        self, args: Any, render: Callable[[dict[str, Any]], str], servers: Any, **fields: Any
    ) -> int:
        """The report printed and written to ``results/<date>-<kind><suffix>.json`` and ``.md``."""
        machine = {
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "servers": {name: version for name, version in dict(servers).items() if version},
            "packages": {package: _version(package) for package in self.packages},
        }
        report = {
            "benchmark": self.kind,
            "date": self.started.date().isoformat(),
            "started_at": self.started.isoformat(timespec="seconds"),
            "command": self.command,
            "load_average_before": self.load_before,
            "load_average_after": _load_average(),
            "duration_seconds": round(time.perf_counter() - self.clock, 1),
            "machine": machine,
            **fields,
        }
        print(markdown := render(report))
        if args.quick and not os.environ.get("BENCH_RESULTS_DIR"):
            print("(--quick: smoke check only, no result files written)")
            return 0
        stem = RESULTS_DIR / f"{report['date']}-{self.kind}{getattr(args, 'suffix', '')}"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", markdown)):
            # A run interrupted while writing must not leave a half file that looks like one.
            Path(f"{stem}{suffix}.tmp").write_text(text, encoding="utf-8")
            Path(f"{stem}{suffix}.tmp").replace(f"{stem}{suffix}")
        progress(f"wrote {stem}.json and .md")
        return 0


# -- command line --------------------------------------------------------------------------------


def parse(
    doc: str | None,
    argv: Sequence[str],
    *,
    only: Iterable[str] = (),
    quick: dict[str, Any] | None = None,
    **defaults: float,
) -> argparse.Namespace:
    """``--quick`` (which sets ``quick``), an option per numeric default (``rounds=11``), and
    ``--only`` if ``only`` names variants."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny, writes no files")
    for name, default in defaults.items():
        parser.add_argument(f"--{name}", type=type(default), default=default, help=f"{default}")
    if known := list(only):
        parser.add_argument("--only", help=f"comma-separated, of: {', '.join(known)}")
    args = parser.parse_args(argv)
    vars(args).update(quick if args.quick and quick else {})
    got = {name: vars(args).get(name, 1) for name in ("rounds", "seconds", "duration", "warmup")}
    if got["rounds"] < 1 or min(got["seconds"], got["duration"]) <= 0 or got["warmup"] < 0:
        parser.error("--rounds must be >= 1, --seconds and --duration > 0, --warmup >= 0")
    names = [n.strip() for n in args.only.split(",")] if known and args.only else known
    if unknown := [n for n in names if n not in known]:
        parser.error(f"unknown name(s) {unknown}; known: {', '.join(known)}")
    args.variants = list(dict.fromkeys(names))
    args.suffix = "-only-" + "+".join(args.variants) if known and args.only else ""
    return args


def run_main(main: Callable[[Sequence[str]], int], failed: str = "benchmark failed") -> None:
    """``main(sys.argv[1:])`` as a script, SIGTERM ending it as Ctrl-C does (servers stopped)."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchmarkError as exc:
        sys.exit(f"{failed}: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted (the servers this run started are stopped)")
