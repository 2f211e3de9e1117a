"""Overlapping requests through gunicorn (2 workers x 2 threads, gthread) on every store two
processes can share: SQLite, Redis, memcached, PostgreSQL and MariaDB. (Not memory: it lives in
one process, so the two workers would each have their own.)

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


def test_request_in_flight_during_logout(app: ServerProcess, store_name: str) -> None:
    """A request loads the session, the user logs out, then that request writes. The write
    must not bring the session back, and its response must not send a cookie that would undo
    the logout's deletion in the browser."""
    port = app.port
    sync = app.workdir / "sync"
    resurrected = clobbered = 0
    for trial in range(LOGOUT_TRIALS):
        cookie = new_session(port, trial)
        tag = f"logout{trial}"
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(get, port, f"/slow-put/late?tag={tag}", cookie)
            deadline_wait(sync / f"{tag}-loaded", slow.done)
            logout = get(port, "/logout", cookie)
            (sync / f"{tag}-logged-out").touch()
            late = slow.result()
        assert logout.status == 200 and logout.cookie() == "", logout  # cookie deleted
        assert late.status == 200, late.text
        if late.cookie() is not None:
            clobbered += 1
        if read(port, cookie) != {}:
            resurrected += 1
    print(
        f"\n[{store_name}] gunicorn 2x2, request in flight during logout: {LOGOUT_TRIALS} trials,"
        f" {LOGOUT_TRIALS} logouts acknowledged, {resurrected} revived,"
        f" {clobbered} cookies clobbered"
    )
    assert resurrected == 0
    assert clobbered == 0


def deadline_wait(path: Path, failed: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``path`` exists; stop early if the request it waits for already ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert not failed(), "the slow request ended before it loaded the session"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.001)
