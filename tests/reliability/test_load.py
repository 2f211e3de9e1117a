"""Many new sessions and many requests: the store holds only the live sessions, and the process
memory stays flat.

Sessions arrive in waves; each new session gets one write that creates it, then three more
requests (a read, a read-and-write, a read). Between waves time moves on, so old sessions pass
their idle timeout. On the memory, SQLite, PostgreSQL and MariaDB stores the app's clock is
simulated and expired sessions are removed by ``clear_expired``; on Redis and Memcached time is
real and the store's own expiry removes them.

The full size (50,000 sessions, 200,000 requests, on every store) is a soak run of several
minutes, skipped unless ``FSS_SOAK=1`` is set (``make soak``); a small size runs with every
``make test``.
Figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import gc
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from memcached_servers import running
from pymemcache.client.base import Client as MemcacheClient  # type: ignore[import-untyped]
from servers import ServerProcess
from sqlalchemy import func, select
from store_urls import fresh_store_url

from flask_serversession import Store, store_from_url
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.sql import SQLStore
from flask_serversession.stores.sqlite import SQLiteStore
from flask_serversession.testing import make_app

#: Thousands of sessions per store: `make test` runs it, `make check` does not.
pytestmark = pytest.mark.slow

SOAK = os.environ.get("FSS_SOAK") == "1"
soak = pytest.mark.skipif(not SOAK, reason="soak run: set FSS_SOAK=1 (make soak)")

REQUESTS_PER_SESSION = 4
#: Simulated seconds between waves, and the idle timeout: at most IDLE // STEP waves live.
STEP = 10.0
IDLE = 35.0
#: Allowed growth of the resident set between the end of the warm-up and the end of the run.
RSS_BOUND_MB = 50.0


def rss_mb() -> float:
    """This process's resident set size (VmRSS), in MB."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class SimClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Figures:
    sessions: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    max_size: int = 0
    max_bound: int = 0
    rss_before: float = 0.0
    rss_after: float = 0.0

    def count(self, status: int) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def report(self, name: str, final_size: int) -> str:
        return (
            f"\n{name}: {self.sessions:,} sessions, {self.requests:,} requests,"
            f" statuses {self.statuses}; store size at most {self.max_size:,}"
            f" (bound {self.max_bound:,} live), {final_size:,} at the end;"
            f" RSS {self.rss_before:.1f} MB after warm-up -> {self.rss_after:.1f} MB"
            f" (+{self.rss_after - self.rss_before:.1f} MB)"
        )


def run_wave(client: FlaskClient, first: int, size: int, figures: Figures) -> None:
    """``size`` new sessions, each created by a write and then used by three more requests."""
    cookies: list[str] = []
    for n in range(first, first + size):
        response = client.get(f"/set/user/u{n}")
        figures.count(response.status_code)
        value = response.headers["Set-Cookie"].split(";", 1)[0]  # "session=<id>.<sig>"
        cookies.append(value)
    for i, cookie in enumerate(cookies):
        headers = {"Cookie": cookie}
        for path in ("/get/user", f"/rw/n/{i}", "/get/n"):
            response = client.get(path, headers=headers)
            figures.count(response.status_code)
        assert response.text == repr(str(i))
    figures.sessions += size


def load(
    store: Store,
    sessions: int,
    wave: int,
    size_of: Callable[[], int],
    *,
    clock: SimClock | None,
    idle: float,
    live_bound: Callable[[], int],
) -> Figures:
    """Run ``sessions`` new sessions in waves; after each wave remove the expired ones (simulated
    clock) and check the store size against ``live_bound()``. RSS is taken after a warm-up of
    a fifth of the waves (at least until the store is full)."""
    app = make_app(store, idle_timeout=idle, absolute_timeout=24 * 3600.0)
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    if clock is not None:
        interface.clock = clock
    client = app.test_client(use_cookies=False)
    figures = Figures()
    waves = sessions // wave
    warm_up = max(waves // 5, int(IDLE // STEP) + 2)
    assert waves > warm_up, "too few waves to measure after the warm-up"
    for w in range(waves):
        if w == warm_up:
            figures.rss_before = rss_mb()
        run_wave(client, w * wave, wave, figures)
        if clock is not None:
            clock.now += STEP
            store.clear_expired(clock())
        size, bound = size_of(), live_bound()
        assert size <= bound, f"wave {w}: {size} records in the store, at most {bound} live"
        figures.max_size = max(figures.max_size, size)
        figures.max_bound = max(figures.max_bound, bound)
    figures.rss_after = rss_mb()
    assert figures.requests == sessions * REQUESTS_PER_SESSION
    assert figures.statuses == {200: figures.requests}
    assert figures.rss_after - figures.rss_before < RSS_BOUND_MB
    return figures


#: The stores whose expired sessions ``clear_expired`` removes, so the test can drive their
#: time, and how many sessions the small run (``make test``) creates on each: fewer on the
#: servers, whose requests are slower.
CLOCKED = {"memory": 5_000, "sqlite": 5_000, "postgresql": 2_000, "mariadb": 2_000}


@pytest.fixture(params=list(CLOCKED))
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each kind whose expiry the test's simulated clock drives."""
    store = store_from_url(fresh_store_url(request, request.param, tmp_path))
    yield store
    store.close()


def rows(store: Store) -> int:
    """Every record the store holds, live or not, counted on a separate connection as another
    process would see them."""
    if isinstance(store, MemoryStore):
        return len(store._records)
    if isinstance(store, SQLStore):
        with store.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(store.table)).scalar_one()
        return int(count)
    assert isinstance(store, SQLiteStore)
    connection = sqlite3.connect(store.path)
    try:
        (count,) = connection.execute(f"SELECT COUNT(*) FROM {store.table}").fetchone()
    finally:
        connection.close()
    return int(count)


def clocked_load(store: Store, sessions: int, wave: int) -> None:
    """Simulated time: after each wave and ``clear_expired``, only the waves of the last IDLE
    seconds may remain."""
    clock = SimClock()
    live_waves = int(IDLE // STEP)  # the waves of the last IDLE seconds, after the advance
    figures = load(
        store,
        sessions,
        wave,
        lambda: rows(store),
        clock=clock,
        idle=IDLE,
        live_bound=lambda: live_waves * wave,
    )
    assert figures.max_size >= wave  # the store was really used
    clock.now += IDLE + 1
    store.clear_expired(clock())
    final = rows(store)
    print(figures.report(store.name, final))
    assert final == 0


def test_load_small(clocked: Store, request: pytest.FixtureRequest) -> None:
    """2,000-5,000 new sessions, four requests each: the same assertions as the soak run."""
    kind = request.node.callspec.params["clocked"]
    clocked_load(clocked, sessions=CLOCKED[kind], wave=250)


@soak
def test_load_soak(clocked: Store) -> None:
    """50,000 new sessions, 200,000 requests."""
    clocked_load(clocked, sessions=50_000, wave=1_000)


def wave_seconds(store: Store, wave: int) -> float:
    """How long one wave of ``wave`` sessions takes on ``store`` on this machine now."""
    client = make_app(store, idle_timeout=3600.0).test_client(use_cookies=False)
    started = time.monotonic()
    run_wave(client, 0, wave, Figures())
    return time.monotonic() - started


def realtime_idle(least: float, one_wave: float) -> float:
    """The real idle timeout of a run: ``least``, or three times one wave's measured duration
    if that is longer (a busy machine), so that no session idles out while its own wave is
    still sending its requests. The bound the test checks scales with it."""
    return max(least, 3 * one_wave)


def realtime_load(
    store: Store, count: Callable[[], int], sessions: int, wave: int, idle: float, slack: float
) -> Figures:
    """Real time, the store's own expiry: the records never outnumber the sessions written
    within the idle timeout (plus ``slack`` seconds of the store's expiry granularity), and
    none remain once it has passed. ``idle`` (real seconds) must exceed the time one wave takes
    (see :func:`realtime_idle`), or a wave's first sessions expire before their last requests."""
    ended: list[float] = []  # when each wave's last request was answered

    def bound() -> int:
        now = time.time()
        ended.append(now)
        return wave * sum(1 for t in ended if t + idle + slack > now)

    figures = load(store, sessions, wave, count, clock=None, idle=idle, live_bound=bound)
    assert figures.max_size >= wave
    time.sleep(idle + slack)
    return figures


def redis_load(server: ServerProcess, sessions: int, wave: int, idle: float) -> None:
    """On the run's Redis, the keys under a fresh prefix."""
    prefix = f"load{uuid.uuid4().hex[:12]}:"
    store = store_from_url(f"redis://127.0.0.1:{server.port}?prefix={prefix}")
    direct = redis.Redis(port=server.port)
    trial = store_from_url(f"redis://127.0.0.1:{server.port}?prefix=trial{prefix}")
    try:
        idle = realtime_idle(idle, wave_seconds(trial, wave))
    finally:
        trial.close()
        for key in direct.scan_iter(match=f"trial{prefix}*", count=1000):
            direct.delete(key)

    def keys() -> int:
        return sum(1 for _ in direct.scan_iter(match=f"{prefix}*", count=1000))

    try:
        figures = realtime_load(store, keys, sessions, wave, idle, slack=0.1)
        final = keys()
        print(figures.report(f"redis (prefix {prefix})", final))
        assert final == 0
    finally:
        direct.close()
        store.close()


def test_load_small_redis(redis_server: ServerProcess) -> None:
    redis_load(redis_server, sessions=2_000, wave=200, idle=1.0)


@soak
def test_load_soak_redis(redis_server: ServerProcess) -> None:
    redis_load(redis_server, sessions=50_000, wave=1_000, idle=10.0)


def memcached_load(workdir: Path, sessions: int, wave: int, idle: float) -> None:
    """On a memcached of its own, whose item count is then ours alone. An item outlives its
    session by up to 2 s (our TTL is rounded up to whole seconds, plus one for memcached's
    one-second clock), and memcached's clock itself lags real time by up to a tick, hence 3 s
    of slack; its LRU crawler is asked to reclaim expired items before each count."""
    with running(workdir) as (server,):
        store = store_from_url(f"memcached://127.0.0.1:{server.port}")
        direct = MemcacheClient(("127.0.0.1", server.port))

        def items() -> int:
            # The crawl runs in memcached's background thread: count once it has finished
            # (on a busy machine, counting at once saw expired items not yet reclaimed).
            direct.raw_command(b"lru_crawler crawl all", b"\r\n")
            deadline = time.monotonic() + 10
            while direct.stats()[b"lru_crawler_running"] and time.monotonic() < deadline:
                time.sleep(0.01)
            return int(direct.stats()[b"curr_items"])

        try:
            idle = realtime_idle(idle, wave_seconds(store, wave))
            direct.flush_all()  # the trial wave's items: the run counts its own alone
            figures = realtime_load(store, items, sessions, wave, idle, slack=3.0)
            final = items()
            print(figures.report(f"memcached (port {server.port})", final))
            assert final == 0
        finally:
            direct.close()
            store.close()


def test_load_small_memcached(tmp_path: Path) -> None:
    memcached_load(tmp_path, sessions=2_000, wave=200, idle=1.0)


@soak
def test_load_soak_memcached(tmp_path: Path) -> None:
    memcached_load(tmp_path, sessions=50_000, wave=1_000, idle=10.0)
