"""Faults under a stream of requests through gunicorn: the store server killed and restarted,
a worker killed in the middle of writes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gunicorn_server import SHARED_STORES, get, gunicorn, parent_pid, shared_store_url
from memcached_servers import running
from redis_servers import standalone
from servers import ServerProcess
from sql_servers import mariadb, postgresql

from flask_serversession import store_from_url
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.serialization import loads_value

#: Servers and gunicorn workers killed mid-stream: `make test` runs it, `make check` does not.
pytestmark = pytest.mark.slow

#: The store must answer again within this many seconds of its return.
RECOVERY = 2.0
#: The stores whose server is killed and restarted. Not SQLite: there is no server to kill, the
#: database is a file the workers open themselves (a crash in the middle of its writes is the
#: worker SIGKILL below); not memory: it lives in the workers.
STORE_SERVERS = ["redis", "postgresql", "mariadb", "memcached"]
#: Words of the store's internals that the 503 must not show.
INTERNALS = ("redis", "postgres", "psycopg", "mysql", "mariadb", "sqlalchemy", "memcache",
             "127.0.0.1", "traceback", "refused", "operationalerror")  # fmt: skip


@dataclass
class Sent:
    path: str
    started: float
    ended: float
    status: int  # 0: no response (connection error)
    retry_after: str | None = None
    text: str = ""
    cookie: str | None = None  # the session cookie the request carried
    set_cookie: str | None = None  # the session cookie the response set

    @property
    def session(self) -> str | None:
        """The cookie of the session a successful write went to."""
        return self.cookie if self.set_cookie is None else self.set_cookie


def send(port: int, path: str, cookie: str | None) -> Sent:
    started = time.monotonic()
    try:
        reply = get(port, path, cookie)
    except (OSError, http.client.HTTPException):
        return Sent(path, started, time.monotonic(), 0, cookie=cookie)
    retry_after = reply.headers.get("Retry-After")
    return Sent(path, started, time.monotonic(), reply.status, retry_after, reply.text, cookie,
                reply.cookie())  # fmt: skip


@dataclass
class StoreServer:
    """A private store server the test may kill, and the app's URL for it."""

    label: str
    process: ServerProcess
    url: str
    #: Whether what it acknowledged survives a SIGKILL of the server.
    durable: bool


@contextmanager
def store_server(kind: str, workdir: Path) -> Iterator[StoreServer]:
    """A server of its own (the run's shared ones serve other tests). Each URL makes a request
    fail fast while the server is down, like Redis' ``socket_timeout=1``."""
    if kind == "redis":
        with standalone(workdir, "--appendonly", "yes", "--appendfsync", "always") as redis:
            url = f"redis://127.0.0.1:{redis.port}/0?socket_timeout=1&socket_connect_timeout=1"
            yield StoreServer("redis appendonly", redis, url, durable=True)
    elif kind == "postgresql":
        # synchronous_commit=off (the shared server's) acknowledges a commit before its WAL is
        # written, so a kill would lose acknowledged writes; on, the WAL is written (to the OS)
        # before the commit returns. fsync stays off: a SIGKILL kills the server, not the OS,
        # whose page cache keeps every write made. full_page_writes: a SIGKILL can cut a
        # write() short between memory pages, tearing an 8 KB page, which recovery then
        # restores from the WAL's copy. A refused connection fails at once; connect_timeout
        # (psycopg enforces at least 2 s; unset, it waits 130 s) bounds a server that accepts
        # but does not answer.
        settings = {"synchronous_commit": "on", "full_page_writes": "on"}
        with postgresql(settings) as pg:
            url = f"{pg.url}?table=sessions&connect_timeout=2"
            yield StoreServer("postgresql synchronous_commit=on", pg.process, url, durable=True)
    elif kind == "mariadb":
        # innodb_flush_log_at_trx_commit=2 writes the redo log (to the OS) at each commit and
        # flushes it once a second: "lose transactions if there is a power failure or kernel
        # crash but not if mysqld crashes" (MariaDB's documentation). The doublewrite buffer
        # repairs a 16 KB page torn by the kill (see full_page_writes above).
        with mariadb(["--innodb-doublewrite=1"]) as my:
            url = f"{my.url}?table=sessions&connect_timeout=1&read_timeout=1&write_timeout=1"
            yield StoreServer("mariadb flush_log_at_trx_commit=2", my.process, url, durable=True)
    else:
        assert kind == "memcached", kind
        # Keeps nothing on disk: what it held before the kill is gone after the restart.
        with running(workdir) as (memcached,):
            url = f"memcached://127.0.0.1:{memcached.port}?connect_timeout=1&timeout=1"
            yield StoreServer("memcached", memcached, url, durable=False)


@pytest.mark.parametrize("kind", STORE_SERVERS)
def test_store_killed_and_restarted_during_a_stream(kind: str, tmp_path: Path) -> None:
    """The store's server is SIGKILLed (PostgreSQL: the postmaster and its backends) while a
    client alternates session writes and requests that never touch the session, then restarted
    on the same port and data (crash recovery; Redis replays its append-only file). The app is
    not restarted. The client behaves like a browser: it sends its cookie with every request
    and takes the one a response sets."""
    with store_server(kind, tmp_path / "store") as store:
        with gunicorn(tmp_path / "gunicorn", store.url) as app:
            port = app.port
            seed = send(port, "/put/k0?v=0", None)
            assert seed.status == 200 and seed.set_cookie, seed
            first_cookie = seed.set_cookie
            jar: list[str | None] = [first_cookie]
            sent: list[Sent] = []
            stop = threading.Event()

            def stream() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    for path in (f"/put/k{i}?v={i}", "/none"):
                        reply = send(port, path, jar[0])
                        sent.append(reply)
                        if reply.set_cookie is not None:
                            jar[0] = reply.set_cookie or None

            streamer = threading.Thread(target=stream)
            streamer.start()
            try:
                time.sleep(0.5)
                store.process.kill()  # SIGKILL by PID; returns once it is dead
                killed_at = time.monotonic()
                time.sleep(1.5)
                restarting_at = time.monotonic()
                store.process.start()  # same port, same data; returns once it answers
                up_at = time.monotonic()
                time.sleep(RECOVERY + 1.0)
            finally:
                stop.set()
                streamer.join(30)
            assert not streamer.is_alive()

            untouched = [s for s in sent if s.path == "/none"]
            writes = [s for s in sent if s.path != "/none"]
            down = [s for s in writes if s.started > killed_at and s.ended < restarting_at]
            late = [s for s in writes if s.started > up_at + RECOVERY]
            acknowledged = [seed, *(s for s in writes if s.status == 200)]
            first_ok = min((s.ended for s in writes if s.started > up_at and s.status == 200),
                           default=float("inf"))  # fmt: skip
            new_cookies = [s.set_cookie for s in sent if s.set_cookie is not None]
            # What must be there: every acknowledged write, in the session it went to; with
            # memcached only those made after the restart.
            kept = [s for s in acknowledged if store.durable or s.started > restarting_at]
            gone = [s for s in acknowledged if s not in kept]
            reads = {cookie: send(port, "/read", cookie) for cookie in {s.session for s in kept}}
            reads[first_cookie] = send(port, "/read", first_cookie)
            assert all(r.status == 200 for r in reads.values()), reads
            data = {cookie: json.loads(r.text) for cookie, r in reads.items()}
            lost = [s.path for s in kept if data[s.session].get(key_of(s.path)) != value_of(s.path)]
            print(
                f"\n[{store.label}] killed and restarted under a stream: {len(sent)} requests;"
                f" untouched: {len(untouched)}, {sum(s.status != 200 for s in untouched)} not 200;"
                f" session writes during the outage: {len(down)},"
                f" {sum(s.status == 503 for s in down)} answered 503;"
                f" server ready {up_at - restarting_at:.3f} s after its restart began,"
                f" first success {first_ok - up_at:.3f} s after that;"
                f" acknowledged {len(acknowledged)}, lost {len(lost)}"
                + ("" if store.durable else f"; {len(gone)} acknowledged before the kill went"
                   f" with it (nothing on disk), new session cookies: {len(new_cookies)}")
            )  # fmt: skip
            assert all(s.status == 200 for s in untouched), "an untouched request failed"
            assert {s.status for s in writes} <= {200, 503}, {s.status for s in writes}
            assert down and all(s.status == 503 for s in down)
            for s in down:  # the library's 503: Retry-After and a generic message, no internals
                assert s.retry_after == "1", s
                assert "session store is temporarily unavailable" in s.text, s.text
                assert not any(word in s.text.lower() for word in INTERNALS), s.text
                assert str(store.process.port) not in s.text, s.text
            assert late and all(s.status == 200 for s in late), "not recovered in 2 s"
            assert first_ok - up_at < RECOVERY
            assert not lost, f"acknowledged writes lost: {lost[:5]}"
            if store.durable:
                assert not new_cookies, "the session changed although the store kept it"
            else:
                # The first write after the restart found its session gone and started a new
                # one; the old cookie now reads as a fresh, empty session.
                assert len(new_cookies) == 1, new_cookies
                assert data[first_cookie] == {}, data[first_cookie]
                assert gone and all(s.started < killed_at for s in gone)


def key_of(path: str) -> str:
    return path.split("?")[0].rsplit("/", 1)[1]


def value_of(path: str) -> str:
    return path.split("v=", 1)[1]


#: ``reliability_app``'s secret key (that module needs its environment to be imported).
APP_SECRET = "reliability-test-secret-0123456789abcdef"
WRITERS = 4
WORKER_KILLS = 4
KEYS = 16
REPEAT = 1000


class Writers:
    """One thread per session cookie, each rewriting its session's keys over HTTP until
    stopped, and what came of it: the last acknowledged write of each key, per writer."""

    def __init__(self, port: int, cookies: list[str]) -> None:
        self.port = port
        self.cookies = cookies
        # KEYS keys of ~10 KB each, rewritten over and over, so a session stays well under
        # SESSION_MAX_SIZE.
        self.acknowledged: list[dict[str, int]] = [{} for _ in cookies]
        self.failed = [0] * len(cookies)
        self.acks = [0] * len(cookies)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.write, args=(w,)) for w in range(len(cookies))
        ]

    def write(self, writer: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            key = f"k{i % KEYS}"
            try:  # large enough that a kill can land inside a write
                path = f"/put/{key}?v={writer}-{i}-&n={REPEAT}"
                reply = get(self.port, path, self.cookies[writer])
            except (OSError, http.client.HTTPException):  # the worker died with it
                self.failed[writer] += 1
                continue
            if reply.status == 200:
                self.acknowledged[writer][key] = i
                self.acks[writer] += 1
            else:
                self.failed[writer] += 1

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)


def new_sessions(port: int, count: int) -> list[str]:
    """The cookies of ``count`` new sessions, one value each."""
    cookies = []
    for writer in range(count):
        reply = get(port, f"/put/w{writer}?v=start")
        cookie = reply.cookie()
        assert reply.status == 200 and cookie
        cookies.append(cookie)
    return cookies


def kill_workers(port: int, gunicorn_pid: int) -> None:
    """SIGKILL the worker that answers, WORKER_KILLS times, 0.4 s apart."""
    for _ in range(WORKER_KILLS):
        time.sleep(0.4)
        pid = int(get(port, "/pid").text)
        assert parent_pid(pid) == gunicorn_pid  # one of our gunicorn's workers
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.4)


def lost_over_http(port: int, writers: Writers) -> tuple[int, int]:
    """Acknowledged writes missing from the sessions as the app reads them, and sessions it
    could not read."""
    lost = unreadable = 0
    for writer, cookie in enumerate(writers.cookies):
        reply = get(port, "/read", cookie)
        if reply.status != 200:
            unreadable += 1
            continue
        lost += count_lost(json.loads(reply.text), writer, writers.acknowledged[writer])
    return lost, unreadable


@dataclass
class FoundInStore:
    """The writers' sessions, read straight from the store."""

    lost: int = 0
    missing: int = 0
    corrupt: int = 0
    values: int = 0
    scanned: int | None = None


def read_store(url: str, writers: Writers) -> FoundInStore:
    """Straight from the store, as the app's next process would find it."""
    signer = CookieSigner([APP_SECRET])
    store = store_from_url(url)
    found = FoundInStore()
    try:
        for writer, cookie in enumerate(writers.cookies):
            session_id, reason = signer.unsign(cookie)
            assert session_id is not None, reason
            record = store.load(store_key(session_id))
            if record is None or not record.is_live(time.time()):
                found.missing += 1
                continue
            decoded = decode_values(record.values, found)
            found.lost += count_lost(decoded, writer, writers.acknowledged[writer])
        if store.capabilities.scan:
            found.scanned = len(list(store.scan(time.time())))
    finally:
        store.close()
    return found


def decode_values(values: dict[str, str], found: FoundInStore) -> dict[str, object]:
    """Each value decoded, counted in ``found`` as read, or as corrupt if it does not decode."""
    decoded = {}
    for key, text in values.items():
        found.values += 1
        try:
            decoded[key] = loads_value(text)
        except Exception:
            found.corrupt += 1
    return decoded


def sqlite_integrity(store_name: str, store_dir: Path) -> list[tuple[str]] | None:
    """``PRAGMA integrity_check`` of an SQLite store's file; ``None`` for other stores."""
    if store_name != "sqlite":
        return None
    with sqlite3.connect(store_dir / "sessions.db") as conn:
        integrity: list[tuple[str]] = conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    return integrity


@pytest.mark.parametrize("store_name", SHARED_STORES)
def test_worker_killed_in_the_middle_of_writes(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> None:
    """Every store two workers can share (memory is per process): writers run while gunicorn
    workers are killed with SIGKILL (gunicorn starts new ones). Afterwards every session reads
    back over HTTP and straight from the store, every stored value decodes, every acknowledged
    write is there, exactly; an SQLite file also passes ``PRAGMA integrity_check``."""
    url = shared_store_url(request, store_name, tmp_path / "store")
    with gunicorn(tmp_path / "gunicorn", url) as app:
        writers = Writers(app.port, new_sessions(app.port, WRITERS))
        writers.start()
        try:
            kill_workers(app.port, app.pid)
        finally:
            writers.stop()
        assert not writers.running()
        lost, unreadable = lost_over_http(app.port, writers)
    found = read_store(url, writers)
    lost += found.lost
    integrity = sqlite_integrity(store_name, tmp_path / "store")
    print(
        f"\n[{store_name}] {WORKER_KILLS} workers SIGKILLed under {WRITERS} writers:"
        f" {sum(writers.acks)} writes acknowledged, {sum(writers.failed)} interrupted,"
        f" {lost} lost, {unreadable} sessions unreadable over HTTP, {found.missing} missing"
        f" from the store, {found.values} stored values read, {found.corrupt} corrupt"
        + (f", integrity_check {integrity}" if integrity is not None else "")
    )
    if integrity is not None:
        assert integrity == [("ok",)]
    assert found.scanned is None or found.scanned == WRITERS, found.scanned
    assert found.corrupt == 0 and unreadable == 0 and found.missing == 0 and lost == 0
    assert found.values >= WRITERS * KEYS
    assert sum(writers.failed) >= 1, "no write was interrupted: the kills landed between requests"


def count_lost(data: dict[str, object], writer: int, acknowledged: dict[str, int]) -> int:
    """How many of ``writer``'s acknowledged writes ``data`` (one session's values) lacks. A key
    must hold the value of its last acknowledged write, or of a later one (a write can land
    although its worker died before answering), never an older one and never a mix."""
    lost = 0
    for key, acked in acknowledged.items():
        stored = data.get(key, "")
        assert isinstance(stored, str), (key, stored)
        unit = stored[: len(stored) // REPEAT]
        _, _, number = unit.rstrip("-").partition("-")
        exact = stored == unit * REPEAT and unit.startswith(f"{writer}-")
        if not exact or int(number) < acked:
            lost += 1
    return lost
