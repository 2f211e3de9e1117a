"""Overlapping requests through gunicorn (2 workers x 2 threads, gthread) on every store two
processes can share: SQLite, Redis, memcached, PostgreSQL and MariaDB. (Not memory: it lives in
one process, so the two workers would each have their own.)

Cases: writers on different keys; a slow reader overlapping a writer; a request in flight while
the session is ended by logout, regeneration or revocation from another device.

The requests really overlap: each race view loads the session, then waits (through files, since
the two requests may run in different worker processes) until its partner has loaded too, and
only then writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from gunicorn_server import SHARED_STORES, Reply, get, gunicorn, shared_store_url
from servers import ServerProcess

#: Through gunicorn, 1,000 trials per store: `make test` runs it, `make check` does not.
pytestmark = pytest.mark.slow

TRIALS = 1000
LOGOUT_TRIALS = 10


@pytest.fixture(params=SHARED_STORES)
def store_name(request: pytest.FixtureRequest) -> str:
    """Each kind of store both gunicorn workers can share. Memory is excluded: it is per
    process, so each worker would see only its own sessions."""
    name: str = request.param
    return name


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_name: str, tmp_path: Path) -> str:
    """A fresh, empty store of that kind."""
    return shared_store_url(request, store_name, tmp_path / "store")


@pytest.fixture
def app(store_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with gunicorn(tmp_path / "gunicorn", store_url) as server:
        yield server


def in_parallel(*calls: Callable[[], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def new_session(port: int, trial: int) -> str:
    reply = get(port, f"/seed?trial={trial}")
    cookie = reply.cookie()
    assert reply.status == 200 and cookie, reply
    return cookie


def read(port: int, cookie: str) -> dict[str, object]:
    reply = get(port, "/read", cookie)
    assert reply.status == 200, reply
    data = json.loads(reply.text)
    assert isinstance(data, dict)
    return data


def test_overlapping_writers_on_different_keys(app: ServerProcess, store_name: str) -> None:
    port = app.port
    lost: list[str] = []
    for trial in range(TRIALS):
        cookie = new_session(port, trial)
        replies = in_parallel(
            partial(get, port, f"/race/a?trial={trial}&tag=t{trial}", cookie),
            partial(get, port, f"/race/b?trial={trial}&tag=t{trial}", cookie),
        )
        for reply in replies:
            assert reply.status == 200, reply.text
            assert reply.text.endswith(f"None -> {trial}"), reply.text  # both loaded first
            assert reply.cookie() is None  # no new ID, no cookie re-sent
        data = read(port, cookie)
        if data != {"trial": str(trial), "a": str(trial), "b": str(trial)}:
            lost.append(f"trial {trial}: {data}")
    print(
        f"\n[{store_name}] gunicorn 2x2, overlapping writers on different keys: {TRIALS} trials,"
        f" {TRIALS} sessions, {2 * TRIALS} writes acknowledged, {len(lost)} lost"
    )
    assert not lost, f"{len(lost)} of {TRIALS} trials lost an update, e.g. {lost[:3]}"


ENDINGS = ["logout", "regenerate", "revoke"]
#: What the request in flight does: loads and changes the session; only assigns (no load); only
#: reads a permanent session whose idle expiry is refreshed on every load.
IN_FLIGHT = ["read-modify", "assign-only", "read-only"]


@pytest.fixture
def touching_app(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """The app with a tiny SESSION_TOUCH_INTERVAL: every load refreshes the idle expiry, so a
    read-only request writes too (the case where a stale refresh could revive a session)."""
    monkeypatch.setenv("FSS_TOUCH_INTERVAL", "1e-6")
    with gunicorn(tmp_path / "gunicorn", store_url) as server:
        yield server


@pytest.mark.parametrize("ending", ENDINGS)
def test_request_in_flight_when_the_session_ends(
    touching_app: ServerProcess, store_name: str, ending: str
) -> None:
    """A request S starts with the session's cookie (and loads it, except assign-only); then,
    on another connection, the user logs out, logs in again (a new ID), or another device
    revokes the session by its handle; then S finishes. S must not bring the old session back
    under the old ID, and must send no cookie: one would restore the deleted cookie (logout) or
    overwrite the browser's new one (regenerate)."""
    port = touching_app.port
    sync = touching_app.workdir / "sync"
    resurrected = clobbered = trials = 0
    for kind in IN_FLIGHT:
        for trial in range(LOGOUT_TRIALS):
            trials += 1
            seeded = get(port, f"/seed-cart?permanent={int(kind == 'read-only')}")
            cookie = seeded.cookie()
            assert seeded.status == 200 and cookie, seeded
            tag = f"{ending}-{kind}-{trial}"
            handle = get(port, "/handle", cookie).text
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(get, port, f"/in-flight/{kind}?tag={tag}", cookie)
                deadline_wait(sync / f"{tag}-loaded", slow.done)
                ended = end_session(port, ending, cookie, handle)
                (sync / f"{tag}-ended").touch()
                late = slow.result()
            assert late.status == 200, late.text
            if late.cookie() is not None:
                clobbered += 1
            if read(port, cookie) != {}:
                resurrected += 1
            if ending == "regenerate":  # the data moved to the new ID, untouched by S
                assert ended is not None
                data = read(port, ended)
                assert data["Username"] == "Admin" and data["cart"] == [1, 2, 3], data
    print(
        f"\n[{store_name}] gunicorn 2x2, request in flight during {ending}: {trials} trials"
        f" ({', '.join(IN_FLIGHT)}), {trials} {ending}s acknowledged, {resurrected} revived,"
        f" {clobbered} cookies clobbered"
    )
    assert resurrected == 0
    assert clobbered == 0


def end_session(port: int, ending: str, cookie: str, handle: str) -> str | None:
    """End the session as ``ending`` does; return the new cookie after a regeneration."""
    if ending == "revoke":  # from another device: no cookie of this session
        reply = get(port, f"/revoke/{handle}")
        assert reply.status == 200 and reply.text == "revoked", reply
        assert reply.cookie() is None
        return None
    reply = get(port, f"/{ending}", cookie)
    assert reply.status == 200, reply
    if ending == "logout":
        assert reply.cookie() == "", reply  # the cookie is deleted
        return None
    new = reply.cookie()
    assert new and new != cookie, reply
    return new


SLOW_READ_TRIALS = 50


def test_slow_reader_overlapping_a_writer(app: ServerProcess, store_name: str) -> None:
    """A read-only request loads the session and, while it is still running, another request
    writes (a flat value; with ``nested``, also appends to a list in place). The reader ends
    after the write: it must not undo it, and sends no cookie."""
    port = app.port
    sync = app.workdir / "sync"
    undone: list[str] = []
    trials = 0
    for nested in (0, 1):
        for trial in range(SLOW_READ_TRIALS):
            trials += 1
            seeded = get(port, "/seed-cart")
            cookie = seeded.cookie()
            assert seeded.status == 200 and cookie, seeded
            tag = f"read-{nested}-{trial}"
            with ThreadPoolExecutor(1) as pool:
                reader = pool.submit(get, port, f"/slow-read?tag={tag}&nested={nested}", cookie)
                deadline_wait(sync / f"{tag}-loaded", reader.done)
                written = get(port, f"/write?nested={nested}", cookie)
                (sync / f"{tag}-written").touch()
                seen = reader.result()
            assert written.status == 200 and written.cookie() is None, written
            assert seen.status == 200 and seen.text == f"old {6 * nested}", seen.text
            assert seen.cookie() is None, seen
            data = read(port, cookie)
            expected = [1, 2, 3, 4] if nested else [1, 2, 3]
            if data.get("x") != "new" or data.get("cart") != expected:
                undone.append(f"nested={nested} trial {trial}: {data}")
    print(
        f"\n[{store_name}] gunicorn 2x2, slow reader overlapping a writer: {trials} trials"
        f" (flat and nested), {trials} writes acknowledged, {len(undone)} undone"
    )
    assert not undone, f"{len(undone)} of {trials} writes undone, e.g. {undone[:3]}"


def deadline_wait(path: Path, failed: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``path`` exists; stop early if the request it waits for already ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert not failed(), "the slow request ended before it loaded the session"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.001)
