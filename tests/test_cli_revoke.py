"""``flask sessions revoke``, ``revoke-user`` and ``revoke-all``, on every store that can list
sessions: the effect is checked from the devices' side, and a failing store or Ctrl-C midway
says how far the command got.
"""

from __future__ import annotations

from pathlib import Path

from cli_world import (
    STRONG_KEY,
    cli_app,
    fill_store,
    list_json,
    live_count,
    make_world,
    new_device,
    run_cli,
)
from flask import Flask
from redis_servers import standalone
from servers import ServerProcess

from flask_serversession import ServerSession, Store, store_from_url
from flask_serversession.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE
from flask_serversession.testing import CountingStore


def test_revoke(listing_store: Store) -> None:
    world = make_world(listing_store)
    ended = world.alice[1]
    result = run_cli(world.app, "revoke", ended.handle)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Revoked session {ended.handle}.\n"
    # Its very next request finds an empty session; the others are untouched.
    assert ended.whoami() == {"user": None, "handle": None, "auth": None}
    assert ended.value() == "None"
    for device in (world.alice[0], world.alice[2], world.bob):
        assert device.whoami()["user"] == device.user
        assert device.value() == repr(device.user)
    assert run_cli(world.app, "revoke", ended.handle).exit_code == EXIT_NOT_FOUND


def test_revoke_user_keep(listing_store: Store) -> None:
    world = make_world(listing_store)
    kept = world.alice[1]

    # A --keep that is not one of the user's sessions revokes nothing.
    result = run_cli(world.app, "revoke-user", "alice", "--keep", world.bob.handle)
    assert result.exit_code == EXIT_NOT_FOUND
    assert "nothing was revoked" in result.stderr
    assert len(list_json(world.app, "--user", "alice")) == 3

    result = run_cli(world.app, "revoke-user", "alice", "--keep", kept.handle)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 2 sessions of user alice (kept 1).\n"
    assert [info["handle"] for info in list_json(world.app, "--user", "alice")] == [kept.handle]
    assert kept.whoami()["user"] == "alice"
    for device in (world.alice[0], world.alice[2]):
        assert device.whoami()["user"] is None and device.value() == "None"
    assert world.bob.whoami()["user"] == "bob"

    result = run_cli(world.app, "revoke-user", "alice")
    assert result.exit_code == 0 and result.stdout == "Revoked 1 session of user alice.\n"
    assert kept.whoami()["user"] is None
    result = run_cli(world.app, "revoke-user", "alice")
    assert result.exit_code == 0 and result.stdout == "Revoked 0 sessions of user alice.\n"


def test_revoke_all_needs_yes(listing_store: Store) -> None:
    world = make_world(listing_store)
    result = run_cli(world.app, "revoke-all")
    assert result.exit_code == EXIT_USAGE
    assert "--yes" in result.stderr and result.stdout == ""
    assert live_count(world.app) == 5

    result = run_cli(world.app, "revoke-all", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 5 sessions.\n"
    assert run_cli(world.app, "list").stdout == "No live sessions.\n"
    for device in world.devices:
        assert device.whoami()["user"] is None and device.value() == "None"


def test_revoke_all_shows_progress(listing_store: Store) -> None:
    """More sessions than a page of the store's scan (500): progress per batch on stderr, the
    count on stdout, and every session over, seen from the API and from the devices."""
    app = cli_app(listing_store, cleanup_batch_size=500)
    devices = [new_device(app, user) for user in ("alice", "bob", None)]
    handles = fill_store(listing_store, 1197) + [device.handle for device in devices]
    assert live_count(app) == 1200

    result = run_cli(app, "revoke-all", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Revoked 1,200 sessions.\n"
    assert result.stderr.splitlines() == [
        "batch 1: revoked 500 (500 so far)",
        "batch 2: revoked 500 (1,000 so far)",
        "batch 3: revoked 200 (1,200 so far)",
    ]
    assert live_count(app) == 0
    for device in devices:
        assert device.whoami() == {"user": None, "handle": None, "auth": None}
        assert device.value() == "None"
    manager = ServerSession.manager(app)
    assert all(manager.get(handle) is None for handle in handles)

    result = run_cli(app, "revoke-all", "--yes")
    assert result.exit_code == 0 and result.stdout == "Revoked 0 sessions.\n"
    assert result.stderr == ""


class _KillsItsServer(CountingStore):
    """A real store whose server is killed (SIGKILL) right after the ``after``-th delete: the
    next call meets a real connection error."""

    def __init__(self, inner: Store, server: ServerProcess, after: int) -> None:
        super().__init__(inner)
        self.server = server
        self.after = after

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        super().delete(key, tombstone_until)
        if self.calls["delete"] == self.after:
            self.server.kill()


def test_revoke_all_reports_how_far_it_got_when_the_store_fails(tmp_path: Path) -> None:
    with standalone(tmp_path / "redis") as server:
        inner = store_from_url(f"redis://127.0.0.1:{server.port}/0?socket_timeout=2")
        try:
            fill_store(inner, 1200)
            app = cli_app(_KillsItsServer(inner, server, after=700), cleanup_batch_size=500)
            result = run_cli(app, "revoke-all", "--yes")
        finally:
            inner.close()
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert result.stdout == ""
    *progress, error = result.stderr.splitlines()
    assert progress == ["batch 1: revoked 500 (500 so far)", "batch 2: revoked 200 (700 so far)"]
    assert error.startswith(
        "Error: revoke-all stopped after revoking 700 sessions (the others may still be live;"
        f" run it again to end them): session store redis://127.0.0.1:{server.port}/0 is"
        " unavailable: "
    )


class _Interrupted(CountingStore):
    """Ctrl-C after the ``after``-th delete."""

    def __init__(self, inner: Store, after: int) -> None:
        super().__init__(inner)
        self.after = after

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if self.calls["delete"] == self.after:
            raise KeyboardInterrupt
        super().delete(key, tombstone_until)


def test_revoke_all_interrupted(any_store: Store) -> None:
    handles = fill_store(any_store, 30)
    app = cli_app(_Interrupted(any_store, after=25), cleanup_batch_size=10)
    result = run_cli(app, "revoke-all", "--yes")
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "batch 1: revoked 10 (10 so far)",
        "batch 2: revoked 10 (20 so far)",
        "batch 3: revoked 5 (25 so far)",
        "Error: interrupted; revoke-all stopped after revoking 25 sessions (the others may"
        " still be live; run it again to end them)",
    ]
    # The 25 it reported are over, the other 5 untouched: running it again finishes the job.
    records = [any_store.load(handle) for handle in handles]
    assert sum(1 for record in records if record is not None and record.ended) == 25
    assert live_count(cli_app(any_store)) == 5
    result = run_cli(cli_app(any_store), "revoke-all", "--yes")
    assert result.exit_code == 0 and result.stdout == "Revoked 5 sessions.\n"


def test_revoke_all_store_down_from_the_start() -> None:
    app = Flask(__name__)
    app.secret_key = STRONG_KEY
    ServerSession(app, store="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    result = run_cli(app, "revoke-all", "--yes")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert result.stderr.startswith(
        "Error: revoke-all stopped before revoking any session: session store"
        " redis://127.0.0.1:1/0 is unavailable: "
    )
    assert len(result.stderr.splitlines()) == 1
