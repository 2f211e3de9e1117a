"""Text for the terminal, as ``flask sessions`` prints it: escaping, durations, times, counts.

Plain functions of their arguments (no click, no app), shared by :mod:`~flask_serversession.cli`
and :mod:`~flask_serversession.checks`.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["plural", "printable", "relative", "span", "utc"]


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``), so a value
    a client chose (a user agent) cannot drive the admin's terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def span(seconds: float) -> str:
    """A duration in its largest unit, rounded: ``"45 s"``, ``"5 min"``, ``"30 days"``."""
    seconds = abs(seconds)
    if seconds < 59.5:
        return f"{round(seconds)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def relative(when: datetime, now: float) -> str:
    """``"5 min ago"``, ``"in 29 days"``, ``"now"``."""
    delta = when.timestamp() - now
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def utc(when: datetime) -> str:
    """``"2026-01-31 12:00:00 UTC"``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(count: int, noun: str) -> str:
    """``"1 session"``, ``"1,024 sessions"``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
