"""``flask sessions list``, ``show``, ``stats`` and ``clear-expired``, on every store that can
do each command.

Listing commands run on memory, SQLite, Redis, PostgreSQL and MariaDB; on Memcached (no index)
they answer with a clear error and exit code 4, while ``show`` and ``revoke`` by handle work.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from cli_world import (
    AGENT,
    cli_app,
    fill_store,
    good_app,
    list_json,
    live_count,
    make_world,
    new_device,
    run_cli,
)
from servers import ServerProcess

from flask_serversession import Store, store_from_url
from flask_serversession.cli import EXIT_NOT_FOUND, EXIT_UNSUPPORTED, EXIT_USAGE, _Progress
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.testing import Clock


def _fresh() -> str:
    return f"cli{uuid.uuid4().hex[:12]}"


@pytest.fixture
def memcached(memcached_server: ServerProcess) -> Iterator[Store]:
    """A fresh Memcached store: no index, native expiry."""
    opened = store_from_url(f"memcached://127.0.0.1:{memcached_server.port}?prefix={_fresh()}:")
    yield opened
    opened.close()


# -- list, show ----------------------------------------------------------------------------------


def test_list_table(listing_store: Store) -> None:
    world = make_world(listing_store)
    result = run_cli(world.app, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "HANDLE",
        "USER",
        "CREATED",
        "LAST",
        "SEEN",
        "EXPIRES",
        "IP",
        "USER",
        "AGENT",
    ]
    assert lines[-1] == "5 sessions"
    rows = lines[1:-1]
    # Most recently used first.
    assert [row.split()[0] for row in rows] == [d.handle for d in reversed(world.devices)]
    first_alice = rows[-1]
    # Expires: the default idle timeout, 30 minutes, from the last use.
    assert "alice" in first_alice and "5 min ago" in first_alice and "in 25 min" in first_alice
    assert "127.0.0.1" in first_alice and "Firefox/140.0" in first_alice
    anonymous = rows[0].split()
    assert anonymous[1] == "-" and "1 min ago" in rows[0]
    world.assert_no_secret_in(result)


def test_list_json_by_user_newest_first_and_limit(listing_store: Store) -> None:
    world = make_world(listing_store)
    listed = list_json(world.app, "--user", "alice")
    assert [info["handle"] for info in listed] == [d.handle for d in reversed(world.alice)]
    for info in listed:
        assert info["user_id"] == "alice"
        assert info["ip"] == "127.0.0.1" and info["user_agent"] == AGENT
        for name in ("created", "last_seen", "expires", "authenticated_at"):
            assert datetime.fromisoformat(info[name]).utcoffset() is not None
        assert info["size"] > 0
    limited = list_json(world.app, "--user", "alice", "--limit", "2")
    assert [info["handle"] for info in limited] == [d.handle for d in world.alice[:0:-1]]
    everyone = list_json(world.app)
    assert {info["handle"] for info in everyone} == {d.handle for d in world.devices}
    assert len(list_json(world.app, "--limit", "3")) == 3
    assert list_json(world.app, "--user", "nobody") == []
    result = run_cli(world.app, "list", "--user", "nobody")
    assert result.exit_code == 0 and result.stdout == "No live sessions of user nobody.\n"
    assert run_cli(world.app, "list", "--limit", "0").exit_code == EXIT_USAGE


def test_show(listing_store: Store) -> None:
    world = make_world(listing_store)
    device = world.alice[1]
    result = run_cli(world.app, "show", device.handle)
    assert result.exit_code == 0, result.output
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert fields["handle"] == device.handle
    assert fields["user"] == "alice"
    assert fields["ip"] == "127.0.0.1" and fields["user agent"] == AGENT
    assert fields["created"].endswith("UTC (4 min ago)")
    assert fields["authenticated"].endswith("UTC (4 min ago)")
    assert fields["expires"].endswith("(in 26 min)")  # 30 minutes idle from the last use
    world.assert_no_secret_in(result)

    result = run_cli(world.app, "show", "--json", world.anonymous.handle)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["handle"] == world.anonymous.handle
    assert shown["user_id"] is None and shown["authenticated_at"] is None


def test_show_and_revoke_refuse_unknown_and_malformed_handles(listing_store: Store) -> None:
    world = make_world(listing_store)
    unknown = store_key(new_session_id())
    for command in ("show", "revoke"):
        result = run_cli(world.app, command, unknown)
        assert result.exit_code == EXIT_NOT_FOUND
        assert result.stderr == "Error: no live session with that handle\n"

        result = run_cli(world.app, command, "not-a-handle")
        assert result.exit_code == EXIT_USAGE
        assert "not a session handle" in result.stderr and "not-a-handle" not in result.output

        # A pasted cookie is refused without being echoed: it holds a session ID.
        cookie = world.bob.client.get_cookie("session")
        assert cookie is not None
        result = run_cli(world.app, command, cookie.value)
        assert result.exit_code == EXIT_USAGE
        assert "looks like a session cookie" in result.stderr
        assert world.bob.session_id not in result.output
    assert live_count(world.app) == 5


def test_handles_may_begin_with_a_dash(any_store: Store) -> None:
    app = cli_app(any_store)
    dashed = next(key for key in iter(lambda: store_key(new_session_id()), "") if key[0] == "-")
    for command in ("show", "revoke"):
        result = run_cli(app, command, dashed)
        assert result.exit_code == EXIT_NOT_FOUND, result.output
        assert result.stderr == "Error: no live session with that handle\n"


# -- stats, clear-expired ------------------------------------------------------------------------


def test_stats(listing_store: Store) -> None:
    world = make_world(listing_store)
    result = run_cli(world.app, "stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["count"] == 5 and stats["users"] == 2 and stats["anonymous"] == 1
    assert stats["by_age"] == {
        "under 1 hour": 5,
        "1 hour to 1 day": 0,
        "1 to 7 days": 0,
        "over 7 days": 0,
    }
    assert stats["size_bytes"]["total"] > 0 and stats["size_bytes"]["max"] > 0

    text = run_cli(world.app, "stats").stdout
    assert re.search(r"^Live sessions\s+5$", text, re.M)
    assert re.search(r"^  of users\s+4 \(2 distinct users\)$", text, re.M)
    assert re.search(r"^  anonymous\s+1$", text, re.M)
    assert re.search(r"^  under 1 hour\s+5$", text, re.M)
    assert re.search(r"^  total\s+[\d,]+ bytes$", text, re.M)


def test_stats_shows_progress(listing_store: Store) -> None:
    """Reading more sessions than a batch: progress per batch on stderr, the figures on
    stdout."""
    app = cli_app(listing_store, cleanup_batch_size=500)
    fill_store(listing_store, 1200)
    result = run_cli(app, "stats", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 1200
    assert result.stderr.splitlines() == [
        "batch 1: read 500 (500 so far)",
        "batch 2: read 500 (1,000 so far)",
        "batch 3: read 200 (1,200 so far)",
    ]


def test_clear_expired(listing_store: Store) -> None:
    clock = Clock(time.time())
    app = cli_app(listing_store, clock, idle_timeout=600, cleanup_batch_size=2)
    if not listing_store.capabilities.clear_expired:
        result = run_cli(app, "clear-expired")
        assert result.exit_code == 0, result.output
        assert "expires sessions by itself: nothing needs doing" in result.stdout
        return

    old = [new_device(app, None) for _ in range(5)]
    clock.advance(3600)  # the five idle out
    live = [new_device(app, "carol") for _ in range(2)]
    result = run_cli(app, "clear-expired")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Removed 5 expired sessions.\n"
    assert result.stderr.splitlines() == [
        "batch 1: removed 2 (2 so far)",
        "batch 2: removed 2 (4 so far)",
        "batch 3: removed 1 (5 so far)",
    ]
    assert live_count(app) == 2
    for device in live:
        assert device.whoami()["user"] == "carol"
    for device in old:
        assert listing_store.load(device.handle) is None  # gone, not just expired

    result = run_cli(app, "clear-expired")
    assert result.stdout == "Removed 0 expired sessions.\n" and result.stderr == ""


def test_progress_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = _Progress(terminal)
    for removed in (1000, 1000, 7):
        progress(removed)
    progress.finish()
    assert terminal.getvalue() == (
        "\rRemoving expired sessions: 1,000"
        "\rRemoving expired sessions: 2,000"
        "\rRemoving expired sessions: 2,007\n"
    )

    terminal = Terminal()
    progress = _Progress(terminal, doing="Revoking sessions", done="revoked")
    for revoked in (500, 500, 200):
        progress(revoked)
    progress.finish()
    assert terminal.getvalue() == (
        "\rRevoking sessions: 500\rRevoking sessions: 1,000\rRevoking sessions: 1,200\n"
    )


# -- Memcached: no index -------------------------------------------------------------------------


def test_memcached_listing_commands_are_unsupported(memcached: Store) -> None:
    app = good_app(memcached)
    device = new_device(app, "alice")
    name = re.escape(memcached.name)
    for command, why in (
        (["list"], "list sessions: it has no index of them"),
        (["list", "--json"], "list sessions: it has no index of them"),
        (["list", "--user", "alice"], "find a user's sessions: it has no per-user index"),
        (["revoke-user", "alice"], "find a user's sessions: it has no per-user index"),
        (["revoke-user", "alice", "--keep", device.handle], "find a user's sessions"),
        (["revoke-all", "--yes"], "list sessions: it has no index of them"),
        (["stats"], "list sessions: it has no index of them"),
    ):
        result = run_cli(app, *command)
        assert result.exit_code == EXIT_UNSUPPORTED, (command, result.output)
        assert re.fullmatch(rf"Error: this store \({name}\) cannot {why}.*\n", result.stderr)
        assert result.stdout == ""
    assert device.whoami()["user"] == "alice"  # nothing was revoked


def test_memcached_show_revoke_clear_and_check(memcached: Store) -> None:
    app = good_app(memcached)
    device = new_device(app, "alice")
    other = new_device(app, "alice")

    result = run_cli(app, "show", "--json", device.handle)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["user_id"] == "alice"

    result = run_cli(app, "revoke", device.handle)
    assert result.exit_code == 0, result.output
    assert device.whoami()["user"] is None and device.value() == "None"
    assert other.whoami()["user"] == "alice"
    assert run_cli(app, "show", device.handle).exit_code == EXIT_NOT_FOUND

    result = run_cli(app, "clear-expired")
    assert result.exit_code == 0
    assert result.stdout == (
        f"This store ({memcached.name}) expires sessions by itself: nothing needs doing.\n"
    )

    result = run_cli(app, "check")
    assert result.exit_code == 0, result.output
    assert re.search(r"^note\s+this store cannot list sessions", result.stdout, re.M)
