"""The ``flask sessions`` command line: list, inspect and revoke sessions, clean up, check.

A thin layer over :class:`~flask_serversession.manage.SessionManager` and
:mod:`~flask_serversession.checks` (what ``check`` finds): the commands parse their options, call
them and print. Registered through the ``flask.commands`` entry point, so every app with
Flask-ServerSession installed has it::

    flask sessions list --user alice
    flask sessions revoke-user alice --keep <handle>
    flask sessions clear-expired
    flask sessions check

Sessions are named by their *handle* (what ``list`` shows): it is not the session ID and cannot
become a cookie, so it is safe in a terminal, a ticket or a log. Nothing here ever prints a
session ID, a cookie or a secret key. Values a client chose (user agent, user IDs) are shown
with control characters escaped, so a crafted user agent cannot drive the admin's terminal.

Errors are one line on stderr (``Error: ...``) and an exit code, never a traceback:

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     done (``check``: nothing to warn about; notes are allowed)
1     not found: no live session with that handle (``show``, ``revoke``, ``revoke-user --keep``);
      ``check``: there are warnings; any other error of the store (an unreadable record);
      ``revoke-all`` interrupted (Ctrl-C; the message says how many it had revoked)
2     usage: an unknown option, a malformed handle, ``revoke-all`` without ``--yes``
3     the session store cannot be reached (midway through ``revoke-all``, the message says how
      many sessions it had revoked)
4     the store cannot do this: it keeps no index of sessions (Memcached) for listing,
      statistics, ``revoke-user`` and ``revoke-all``
5     configuration: Flask-ServerSession is not set up on the app, its configuration is invalid,
      or (``check``) ``SECRET_KEY`` is missing
====  ==========================================================================================

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .checks import MIN_KEY_BYTES as MIN_KEY_BYTES
from .checks import WHY_UNSUPPORTED, CheckReport, check_app
from .checks import key_weakness as key_weakness
from .cli_text import plural, printable, relative, utc
from .config import Config
from .errors import (
    ConfigurationError,
    ServerSessionError,
    SessionStoreUnavailable,
    UnsupportedOperation,
)
from .extension import ServerSession
from .manage import SessionInfo, SessionManager, check_handle
from .stores import Store

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "EXIT_WARNINGS",
    "sessions",
]

#: Done.
EXIT_OK = 0
#: No live session with that handle.
EXIT_NOT_FOUND = 1
#: ``check`` found something to warn about.
EXIT_WARNINGS = 1
#: Another error of the library (an unreadable stored record).
EXIT_ERROR = 1
#: Bad usage (click's own code for usage errors).
EXIT_USAGE = 2
#: The store cannot be reached.
EXIT_UNAVAILABLE = 3
#: The store lacks the capability (no index: Memcached).
EXIT_UNSUPPORTED = 4
#: Not set up, invalid configuration, or no ``SECRET_KEY``.
EXIT_CONFIG = 5

_P = ParamSpec("_P")
_R = TypeVar("_R")


# -- plumbing ------------------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    """End the command: ``message`` on stderr, exit ``code``."""
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _describe(exc: ServerSessionError) -> tuple[str, int]:
    """The one-line message and the exit code for one of the library's errors."""
    if isinstance(exc, SessionStoreUnavailable):
        return str(exc), EXIT_UNAVAILABLE
    if isinstance(exc, UnsupportedOperation):
        why = WHY_UNSUPPORTED.get(exc.capability, f"do this: it lacks {exc.capability!r}")
        return f"this store ({exc.store}) cannot {why}", EXIT_UNSUPPORTED
    if isinstance(exc, ConfigurationError):
        return str(exc), EXIT_CONFIG
    return str(exc), EXIT_ERROR


def _reports_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn the library's errors into a one-line message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except ServerSessionError as exc:
            _fail(*_describe(exc))

    return wrapper


def _set_up() -> None:
    """End the command (exit 5) unless Flask-ServerSession is set up on the current app."""
    if not ServerSession.is_set_up(current_app):
        _fail(
            "Flask-ServerSession is not set up on this app: call ServerSession(app) or"
            " ServerSession().init_app(app) in the app factory",
            EXIT_CONFIG,
        )


def _manager() -> SessionManager:
    _set_up()
    return ServerSession.manager(current_app)


def _config() -> Config:
    _set_up()
    return ServerSession.config_of(current_app)


def _needs(store: Store, capability: str) -> None:
    """Raise :class:`UnsupportedOperation` now, before any output, if ``store`` lacks it."""
    if not getattr(store.capabilities, capability):
        raise UnsupportedOperation(store.name, capability)


if TYPE_CHECKING:
    _ParamType = click.ParamType[str]  # a generic class in newer click releases
else:
    _ParamType = click.ParamType


class _Handle(_ParamType):
    """A session handle. A malformed one is a usage error that never echoes the input: an
    admin may have pasted a cookie, which holds a session ID."""

    name = "handle"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str):
            try:
                return check_handle(value.strip())
            except ValueError:
                pass
        hint = (
            "; that looks like a session cookie, which is never accepted here"
            if isinstance(value, str) and "." in value
            else ""
        )
        self.fail(
            "not a session handle (43 letters, digits, '-' or '_', as `flask sessions list`"
            f" shows){hint}",
            param,
            ctx,
        )


HANDLE = _Handle()

# A handle may begin with "-" (one in 64 do): take it as the argument, not an unknown option.
_HANDLE_FIRST = {"ignore_unknown_options": True}


def _closing(found: Iterator[SessionInfo]) -> None:
    """Close a listing left part-read (``--limit``), so the store frees its cursor now."""
    close = getattr(found, "close", None)
    if close is not None:
        close()


class _Progress:
    """Counts what ``clear-expired`` removes (or ``revoke-all`` revokes), batch by batch, on
    stderr: one line rewritten in place on a terminal, one line per batch otherwise (a cron
    job's log)."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        doing: str = "Removing expired sessions",
        done: str = "removed",
    ) -> None:
        self.stream: IO[str] = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.doing = doing
        self.done = done
        self.total = 0
        self.batches = 0

    def __call__(self, count: int) -> None:
        self.total += count
        self.batches += 1
        if self.tty:
            click.echo(f"\r{self.doing}: {self.total:,}", nl=False, file=self.stream)
        elif count:
            click.echo(
                f"batch {self.batches}: {self.done} {count:,} ({self.total:,} so far)",
                file=self.stream,
            )

    def finish(self) -> None:
        if self.tty and self.batches:
            click.echo(file=self.stream)


# -- the commands --------------------------------------------------------------------------------


class _Commands(AppGroup):
    """Flask's ``AppGroup``, whose commands report the library's errors in one line even when
    they come from loading the app (a bad SESSION_STORE fails in ``ServerSession(app)``)."""

    def command(  # type: ignore[override]  # as Flask's own AppGroup.command
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Command]:
        kwargs.pop("with_appcontext", None)

        def decorator(callback: Callable[..., Any]) -> click.Command:
            wrapped = _reports_errors(with_appcontext(callback))
            command: click.Command = click.Group.command(self, *args, **kwargs)(wrapped)
            return command

        return decorator


@click.group(cls=_Commands)
def sessions() -> None:
    """Manage server-side sessions: list, show and revoke them, clean up, check the setup.

    Sessions are named by handles (see `list`): a handle is not the session ID and cannot
    become a cookie. Stores without an index (Memcached) can show and revoke a session by
    handle, but not list, count or revoke by user.

    \b
    Exit codes:
      0  done (check: no warnings)
      1  no live session with that handle; check: warnings; other errors
      2  usage error: bad option, malformed handle, revoke-all without --yes
      3  the session store cannot be reached
      4  the store cannot do this (no index of sessions, e.g. Memcached)
      5  not set up or invalid configuration; check: no SECRET_KEY
    """


@sessions.command("list")
@click.option("--user", "user_id", metavar="USER", help="Only this user's sessions.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per session.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N sessions (in the store's order; with --user, the N most recently used).",
)
@_reports_errors
def list_command(user_id: str | None, as_json: bool, limit: int | None) -> None:
    """List live sessions: handle, user, times, client.

    The table shows times relative to now; --json gives ISO 8601 times in UTC.
    """
    manager = _manager()
    _needs(manager.store, "scan" if user_id is None else "by_user")
    found = manager.all(user_id)
    try:
        chosen: Iterable[SessionInfo] = found if limit is None else islice(found, limit)
        if as_json:
            for info in chosen:
                click.echo(json.dumps(info.to_dict()))
            return
        rows = sorted(chosen, key=lambda info: info.last_seen, reverse=True)
    finally:
        _closing(found)
    if not rows:
        whose = "" if user_id is None else f" of user {printable(user_id)}"
        click.echo(f"No live sessions{whose}.")
        return
    _table(rows, manager.now())


def _table(rows: list[SessionInfo], now: float) -> None:
    header = ("HANDLE", "USER", "CREATED", "LAST SEEN", "EXPIRES", "IP", "USER AGENT")
    lines = [header]
    for info in rows:
        agent = printable(info.user_agent or "-")
        lines.append(
            (
                info.handle,
                printable(info.user_id) if info.user_id is not None else "-",
                relative(info.created, now),
                relative(info.last_seen, now),
                relative(info.expires, now),
                printable(info.ip or "-"),
                agent if len(agent) <= 50 else agent[:47] + "...",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        cells.append(line[-1])
        click.echo("  ".join(cells).rstrip())
    click.echo(f"{plural(len(rows), 'session')}")


@sessions.command("show", context_settings=_HANDLE_FIRST)
@click.argument("handle", type=HANDLE)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, times in ISO 8601.")
@_reports_errors
def show_command(handle: str, as_json: bool) -> None:
    """Show one live session by HANDLE."""
    manager = _manager()
    info = manager.get(handle)
    if info is None:
        _fail("no live session with that handle", EXIT_NOT_FOUND)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    now = manager.now()

    def when(moment: datetime | None) -> str:
        return "-" if moment is None else f"{utc(moment)} ({relative(moment, now)})"

    fields = (
        ("handle", info.handle),
        ("user", printable(info.user_id) if info.user_id is not None else "- (anonymous)"),
        ("created", when(info.created)),
        ("last seen", when(info.last_seen)),
        ("expires", when(info.expires)),
        ("authenticated", when(info.authenticated_at)),
        ("ip", printable(info.ip or "-")),
        ("user agent", printable(info.user_agent or "-")),
        ("size", f"{info.size:,} bytes"),
    )
    for name, value in fields:
        click.echo(f"{name:<14} {value}")


@sessions.command("revoke", context_settings=_HANDLE_FIRST)
@click.argument("handle", type=HANDLE)
@_reports_errors
def revoke_command(handle: str) -> None:
    """End the session HANDLE now: its next request starts afresh, on any worker."""
    if not _manager().revoke(handle):
        _fail("no live session with that handle", EXIT_NOT_FOUND)
    click.echo(f"Revoked session {handle}.")


@sessions.command("revoke-user")
@click.argument("user_id", metavar="USER")
@click.option(
    "--keep",
    type=HANDLE,
    metavar="HANDLE",
    help="Keep this session of the user (log out everywhere else).",
)
@_reports_errors
def revoke_user_command(user_id: str, keep: str | None) -> None:
    """End every live session of USER (but the one given to --keep)."""
    manager = _manager()
    _needs(manager.store, "by_user")
    if keep is not None:
        kept = manager.get(keep)
        if kept is None or kept.user_id != user_id:
            _fail(
                f"user {printable(user_id)} has no live session with the handle given to"
                " --keep; nothing was revoked",
                EXIT_NOT_FOUND,
            )
    ended = manager.revoke_user(user_id, keep=keep)
    kept_note = " (kept 1)" if keep is not None else ""
    click.echo(f"Revoked {plural(ended, 'session')} of user {printable(user_id)}{kept_note}.")


@sessions.command("revoke-all")
@click.option("--yes", is_flag=True, help="Confirm: everyone is logged out.")
@_reports_errors
def revoke_all_command(yes: bool) -> None:
    """End every live session: everyone is logged out. Needs --yes.

    Revokes while it reads through the store, showing progress on stderr every
    SESSION_CLEANUP_BATCH_SIZE sessions. If the store fails or Ctrl-C stops it midway, it
    says how many sessions were revoked before that (the others may still be live: run it
    again to finish) and exits with 3 if the store cannot be reached, 1 otherwise.
    """
    if not yes:
        _fail(
            "revoke-all ends every live session and logs everyone out; run it again with"
            " --yes to confirm",
            EXIT_USAGE,
        )
    manager = _manager()
    _needs(manager.store, "scan")
    progress = _Progress(doing="Revoking sessions", done="revoked")
    try:
        ended = manager.revoke_all(progress=progress)
    except ServerSessionError as exc:
        progress.finish()
        message, code = _describe(exc)
        _fail(f"{_stopped(progress.total)}: {message}", code)
    except KeyboardInterrupt:
        progress.finish()
        _fail(f"interrupted; {_stopped(progress.total)}", EXIT_ERROR)
    progress.finish()
    click.echo(f"Revoked {plural(ended, 'session')}.")


def _stopped(revoked: int) -> str:
    """What a ``revoke-all`` stopped midway did, and what is left to do."""
    if not revoked:
        return "revoke-all stopped before revoking any session"
    return (
        f"revoke-all stopped after revoking {plural(revoked, 'session')} (the others may"
        " still be live; run it again to end them)"
    )


@sessions.command("clear-expired")
@_reports_errors
def clear_expired_command() -> None:
    """Remove expired sessions (and the markers revoked ones leave) from the store now.

    Works in batches of SESSION_CLEANUP_BATCH_SIZE, showing progress on stderr. Stores that
    expire entries by themselves (Redis, Memcached) need nothing done.
    """
    manager = _manager()
    store = manager.store
    if not store.capabilities.clear_expired:
        click.echo(f"This store ({store.name}) expires sessions by itself: nothing needs doing.")
        return
    progress = _Progress()
    try:
        removed = manager.clear_expired(progress=progress)
    finally:
        progress.finish()
    click.echo(f"Removed {plural(removed, 'expired session')}.")


@sessions.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_reports_errors
def stats_command(as_json: bool) -> None:
    """Count live sessions: by user binding, by age, and their sizes.

    Reads every live session, showing progress on stderr every SESSION_CLEANUP_BATCH_SIZE.
    """
    manager = _manager()
    _needs(manager.store, "scan")
    progress = _Progress(doing="Reading sessions", done="read")
    try:
        stats = manager.stats(progress=progress)
    finally:
        progress.finish()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    sizes = stats["size_bytes"]
    click.echo(f"Live sessions   {stats['count']:,}")
    bound = stats["count"] - stats["anonymous"]
    click.echo(f"  of users      {bound:,} ({plural(stats['users'], 'distinct user')})")
    click.echo(f"  anonymous     {stats['anonymous']:,}")
    click.echo("By age")
    for bucket, count in stats["by_age"].items():
        click.echo(f"  {bucket:<18} {count:,}")
    click.echo("Size of the stored values")
    for name in ("total", "median", "max"):
        click.echo(f"  {name:<8} {sizes[name]:,} bytes")


@sessions.command("check")
@_reports_errors
def check_command() -> None:
    """Check that the store answers and that the configuration is secure.

    \b
    Prints one line per finding: ok, note, warning or error.
    Exit code: 3 if the store cannot be reached; else 5 if SECRET_KEY is
    missing; else 1 if there are warnings; else 0 (notes do not count).
    """
    report = check_app(current_app, _config())
    for finding in report.findings:
        click.echo(f"{finding.level:<8} {finding.message}")
    errors, warnings = report.count("error"), report.count("warning")
    notes = plural(report.count("note"), "note")
    if errors or warnings:
        parts = [plural(n, word) for n, word in ((errors, "error"), (warnings, "warning")) if n]
        click.echo(f"check: {', '.join(parts)}, {notes}")
    else:
        click.echo(f"check: all good ({notes})")
    raise click.exceptions.Exit(_check_exit_code(report))


def _check_exit_code(report: CheckReport) -> int:
    if report.unreachable:
        return EXIT_UNAVAILABLE
    if report.missing_key:
        return EXIT_CONFIG
    return EXIT_WARNINGS if report.count("warning") else EXIT_OK


@sessions.command("import")
@click.option(
    "--from",
    "source",
    type=click.Choice(["flask-session"]),
    required=True,
    help="Where the sessions are now: Flask-Session's store, as SESSION_TYPE configures it.",
)
@_reports_errors
def import_command(source: str) -> None:
    """Move every Flask-Session session into this store ahead of time.

    Reads the store Flask-Session used (SESSION_TYPE redis or sqlalchemy, with SESSION_REDIS or
    SESSION_SQLALCHEMY and SESSION_KEY_PREFIX), writes each session into ours and deletes the
    old record. A user's old cookie still finds their session: on its first use it gets a new
    ID and the user our cookie. Pickled records are never unpickled: they are skipped.
    Progress goes to stderr; the summary (moved, skipped, failed) to stdout. Exit code 1 if
    any record failed.
    """
    from .migrate import import_sessions

    config = _config()
    legacy = config.flask_session.legacy
    if legacy is None:
        _fail(
            "no Flask-Session store is configured: set SESSION_TYPE (redis or sqlalchemy) and"
            " its client (SESSION_REDIS or SESSION_SQLALCHEMY) as Flask-Session had them",
            EXIT_CONFIG,
        )
    stream = sys.stderr
    tty = stream.isatty()
    seen = 0

    def progress(stats: Any) -> None:
        nonlocal seen
        seen += 1
        line = (
            f"{seen:,} read: {stats.moved:,} moved, {stats.skipped:,} skipped,"
            f" {stats.failed:,} failed"
        )
        if tty:
            click.echo(f"\rImporting from {legacy.name}: {line}", nl=False, file=stream)
        elif seen % 1000 == 0:
            click.echo(line, file=stream)

    click.echo(f"Importing sessions from {legacy.name} into {config.store.name}", file=stream)
    stats = import_sessions(
        config.store,
        legacy,
        config.idle_timeout,
        config.absolute_timeout,
        config.max_size,
        progress,
        config.max_keys,
    )
    if tty and seen:
        click.echo(file=stream)
    click.echo(
        f"Imported: {stats.moved:,} moved, {stats.skipped:,} skipped (pickled or expired),"
        f" {stats.failed:,} failed."
    )
    if stats.failed:
        raise click.exceptions.Exit(EXIT_ERROR)
