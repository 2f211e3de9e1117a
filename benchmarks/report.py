"""The one Markdown renderer (a report's sections -> Markdown tables) and what every run records
and writes: date, command, machine, load averages, ``results/<date>-<kind>.json`` and ``.md``; and
the command-line frame every benchmark shares.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from harness import BenchmarkError, progress

#: Where results go; BENCH_RESULTS_DIR points a trial run elsewhere (plot.py reads it too).
RESULTS_DIR = Path(
    os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results"
)


# -- the Markdown renderer -----------------------------------------------------------------------


#: A table cell: a format string applied to the row (``"{median:,.0f}"``), or a function of it.
Cell = str | Callable[[dict[str, Any]], object]


@dataclass
class Section:
    """One part of a report: a heading (``#`` first for a level down), paragraphs, then a table
    of ``rows`` (dicts from the results JSON) with a ``(title, cell)`` per column, aligned by
    ``align`` (one letter per column: ``l`` or ``r``), then notes."""

    heading: str | None = None
    text: Sequence[str] = ()
    columns: Sequence[tuple[str, Cell]] = ()
    align: str = ""
    rows: Sequence[dict[str, Any]] = ()
    notes: Sequence[str] = ()


def rows_of(nested: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    """Table rows from nested results: ``{a: {b: entry}}`` -> ``[{**entry, names[0]: a,
    names[1]: b}]``."""
    if not names:
        return [nested]
    return [
        {**row, names[0]: key}
        for key, inner in nested.items()
        for row in rows_of(inner, *names[1:])
    ]


def expected(got: int, wanted: int | None) -> str:
    """A count against what an issue requires: ``1 ok``, ``1 **MISSED**``, or ``-``."""
    if wanted is None:
        return "-"
    return f"{wanted} ok" if got == wanted else f"{wanted} **MISSED**"


def _cell(spec: Cell, row: dict[str, Any]) -> str:
    return spec.format_map(row) if isinstance(spec, str) else str(spec(row))


def _table(part: Section) -> list[str]:
    marks = {"l": "---", "r": "---:"}
    lines = ["", "| " + " | ".join(title for title, _ in part.columns) + " |"]
    lines.append("|" + "|".join(marks[a] for a in part.align) + "|")
    cells = [[_cell(spec, row) for _, spec in part.columns] for row in part.rows]
    return lines + ["| " + " | ".join(row) + " |" for row in cells]


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
    # `make bench` runs each script without options.
    make = ["make bench"] if len(command.split()) == 2 else []
    lines += ["", "## Reproduce", "", "```sh", *make, command, "```", ""]
    return "\n".join(lines)


def _script() -> str:
    return Path(sys.argv[0]).name


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def spread(values: Sequence[float] | None, unit: str = "x") -> str:
    return "n/a" if not values else f"{min(values):.2f}-{max(values):.2f}{unit}"


def counts(items: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in items.items()) or "-"


def goal_lines(goals: Iterable[dict[str, Any]]) -> list[str]:
    lines = []
    for goal in goals:
        measured = f"measured {ratio(goal['ratio'])}"
        if goal.get("round_ratios"):
            measured += f", per round {spread(goal['round_ratios'])}"
        if goal.get("not_measured_because"):
            measured += f"; {goal['not_measured_because']}"
        lines.append(f"- **{goal['status']}**: {goal['goal']} ({measured})")
    return lines


def skipped_section(skipped: dict[str, str]) -> Section:
    return Section(
        "Skipped" if skipped else None,
        notes=[f"- **{name}** skipped: {reason}" for name, reason in skipped.items()],
    )


# -- the run's record ----------------------------------------------------------------------------


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(packages: Iterable[str], **extra: Any) -> dict[str, Any]:
    import sqlite3

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        **extra,
        "packages": package_versions(packages),
    }


class Record:
    """What every report starts with (date, command, load averages, duration), and its end."""

    def __init__(self, kind: str, argv: Sequence[str]) -> None:
        self.kind = kind
        self.started = dt.datetime.now(dt.timezone.utc).astimezone()
        self.load_before = load_average()
        self.clock = time.perf_counter()
        self.command = " ".join(["python", f"benchmarks/{_script()}", *map(shlex.quote, argv)])

    def report(self, **fields: Any) -> dict[str, Any]:
        return {
            "benchmark": self.kind,
            "date": self.started.date().isoformat(),
            "started_at": self.started.isoformat(timespec="seconds"),
            "command": self.command,
            "load_average_before": self.load_before,
            "load_average_after": load_average(),
            "duration_seconds": round(time.perf_counter() - self.clock, 1),
            **fields,
        }


def finish(report: dict[str, Any], markdown: str, quick: bool, suffix: str = "") -> int:
    """Print the Markdown; write ``results/<date>-<kind><suffix>.json`` and ``.md`` unless
    ``quick`` (a quick run writes only to a BENCH_RESULTS_DIR, to try plot.py on it). A partial
    run has a suffix, so it never overwrites the day's full results."""
    print(markdown)
    if quick and not os.environ.get("BENCH_RESULTS_DIR"):
        print("(--quick: smoke check only, no result files written)")
        return 0
    stem = f"{report['date']}-{report['benchmark']}{suffix}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (RESULTS_DIR / f"{stem}.json", json.dumps(report, indent=2) + "\n"),
        (RESULTS_DIR / f"{stem}.md", markdown),
    ):
        # A run interrupted while writing must not leave a half file that looks like a result.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    progress(f"wrote {RESULTS_DIR / stem}.json and .md")
    return 0


# -- command line --------------------------------------------------------------------------------


def parse(
    doc: str | None,
    argv: Sequence[str],
    *,
    rounds: int | None = None,
    seconds: float | None = None,
    warmup: float = 0,
    only: Iterable[str] = (),
    quick: dict[str, Any] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> argparse.Namespace:
    """The options every benchmark takes: ``--quick`` (which sets ``quick``), rounds, seconds
    per measurement and warm-up for those that time in rounds, ``--only`` for those with
    variants (``args.variants``, and ``args.suffix`` for the result files of a partial run)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny, writes no files")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds ({rounds})")
        parser.add_argument("--warmup", type=float, default=warmup, help=f"warm-up s ({warmup})")
    if seconds is not None:
        help_text = f"seconds per measurement ({seconds})"
        parser.add_argument("--seconds", type=float, default=seconds, help=help_text)
    known = list(only)
    if known:
        parser.add_argument("--only", help=f"comma-separated, of: {', '.join(known)}")
    extra(parser)
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(quick or {})
    if (
        min(getattr(args, "rounds", 1), getattr(args, "seconds", 1)) <= 0
        or getattr(args, "warmup", 0) < 0
    ):
        parser.error("--rounds and --seconds must be > 0, --warmup >= 0")
    if known:
        args.variants = choose(parser, args.only, known)
        args.suffix = "-only-" + "+".join(args.variants) if args.only else ""
    return args


def choose(parser: argparse.ArgumentParser, only: str | None, known: Sequence[str]) -> list[str]:
    """The names ``--only`` picks from ``known`` (all of them without it)."""
    names = [n.strip() for n in only.split(",")] if only else list(known)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown name(s) {unknown}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def run_main(main: Callable[[Sequence[str]], int], failed: str = "benchmark failed") -> None:
    """``main(sys.argv[1:])`` as a script: SIGTERM ends it like Ctrl-C does (through every
    ``finally``, so the servers the run started are stopped by PID), one line on failure."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchmarkError as exc:
        sys.exit(f"{failed}: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted (the servers this run started are stopped)")
