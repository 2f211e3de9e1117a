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
from dataclasses import dataclass
from pathlib import Path

import pytest
from gunicorn_server import SHARED_STORES, get, gunicorn, parent_pid, shared_store_url
from redis_servers import redis_process

from flask_serversession import store_from_url
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.serialization import loads_value

#: The store must answer again within this many seconds of its return.
RECOVERY = 2.0


@dataclass
class Sent:
    path: str
    started: float
    ended: float
    status: int  # 0: no response (connection error)
    retry_after: str | None = None
    text: str = ""


def test_redis_killed_and_restarted_during_a_stream(tmp_path: Path) -> None:
    """Redis (append-only file, fsync always) is SIGKILLed while a client alternates session
    writes and requests that never touch the session, then restarted on the same port. The
    app is not restarted."""
    redis = redis_process(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    redis.start()
    try:
        url = f"redis://127.0.0.1:{redis.port}/0?socket_timeout=1&socket_connect_timeout=1"
        with gunicorn(tmp_path / "gunicorn", url) as app:
            port = app.port
            seeded = get(port, "/put/k0?v=0")
            cookie = seeded.cookie()
            assert seeded.status == 200 and cookie
            sent: list[Sent] = []
            stop = threading.Event()

            def stream() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    for path, with_cookie in ((f"/put/k{i}?v={i}", True), ("/none", False)):
                        started = time.monotonic()
                        try:
                            reply = get(port, path, cookie if with_cookie else None)
                        except (OSError, http.client.HTTPException):
                            sent.append(Sent(path, started, time.monotonic(), 0))
                            continue
                        retry_after = reply.headers.get("Retry-After")
                        sent.append(
                            Sent(path, started, time.monotonic(), reply.status, retry_after,
                                 reply.text)
                        )  # fmt: skip

            streamer = threading.Thread(target=stream)
            streamer.start()
            try:
                time.sleep(0.5)
                killed_at = time.monotonic()
                redis.kill()  # SIGKILL by PID
                time.sleep(1.5)
                restarting_at = time.monotonic()
                redis.start()  # same port, same directory: replays the append-only file
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
            acknowledged = [s for s in writes if s.status == 200]
            first_ok = min((s.ended for s in writes if s.started > up_at and s.status == 200),
                           default=float("inf"))  # fmt: skip
            data = json.loads(get(port, "/read", cookie).text)
            lost = [s.path for s in acknowledged if data.get(key_of(s.path)) != value_of(s.path)]
            print(
                f"\n[redis appendonly] killed and restarted under a stream: {len(sent)} requests;"
                f" untouched: {len(untouched)}, {sum(s.status != 200 for s in untouched)} not 200;"
                f" session writes during the outage: {len(down)},"
                f" {sum(s.status == 503 for s in down)} answered 503;"
                f" first success {first_ok - up_at:.3f} s after the restart;"
                f" acknowledged {len(acknowledged)}, lost {len(lost)}"
            )
            assert all(s.status == 200 for s in untouched), "an untouched request failed"
            assert {s.status for s in writes} <= {200, 503}, {s.status for s in writes}
            assert down and all(s.status == 503 for s in down)
            # The library's 503: Retry-After and a generic message, no internals.
            assert down[0].retry_after == "1", down[0]
            assert "session store is temporarily unavailable" in down[0].text, down[0].text
            assert "redis" not in down[0].text.lower()
            assert late and all(s.status == 200 for s in late), "not recovered in 2 s"
            assert first_ok - up_at < RECOVERY
            assert not lost, f"acknowledged writes lost: {lost[:5]}"
    finally:
        redis.stop()


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
        port = app.port
        cookies = []
        for writer in range(WRITERS):
            reply = get(port, f"/put/w{writer}?v=start")
            cookie = reply.cookie()
            assert reply.status == 200 and cookie
            cookies.append(cookie)
        # The last acknowledged write of each key: KEYS keys of ~10 KB each, rewritten over and
        # over, so a session stays well under SESSION_MAX_SIZE.
        acknowledged: list[dict[str, int]] = [{} for _ in range(WRITERS)]
        failed = [0] * WRITERS
        acks = [0] * WRITERS
        stop = threading.Event()

        def write(writer: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                key = f"k{i % KEYS}"
                try:  # large enough that a kill can land inside a write
                    reply = get(port, f"/put/{key}?v={writer}-{i}-&n={REPEAT}", cookies[writer])
                except (OSError, http.client.HTTPException):  # the worker died with it
                    failed[writer] += 1
                    continue
                if reply.status == 200:
                    acknowledged[writer][key] = i
                    acks[writer] += 1
                else:
                    failed[writer] += 1

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(WORKER_KILLS):
                time.sleep(0.4)
                pid = int(get(port, "/pid").text)
                assert parent_pid(pid) == app.pid  # one of our gunicorn's workers
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.4)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not any(thread.is_alive() for thread in threads)

        lost = unreadable = 0
        for writer, cookie in enumerate(cookies):
            reply = get(port, "/read", cookie)
            if reply.status != 200:
                unreadable += 1
                continue
            lost += count_lost(json.loads(reply.text), writer, acknowledged[writer])

    # Straight from the store, as the app's next process would find it.
    signer = CookieSigner([APP_SECRET])
    store = store_from_url(url)
    try:
        missing = corrupt = values = 0
        for writer, cookie in enumerate(cookies):
            session_id, reason = signer.unsign(cookie)
            assert session_id is not None, reason
            record = store.load(store_key(session_id))
            if record is None or not record.is_live(time.time()):
                missing += 1
                continue
            decoded = {}
            for key, text in record.values.items():
                values += 1
                try:
                    decoded[key] = loads_value(text)
                except Exception:
                    corrupt += 1
            lost += count_lost(decoded, writer, acknowledged[writer])
        scanned = len(list(store.scan(time.time()))) if store.capabilities.scan else None
    finally:
        store.close()
    integrity = None
    if store_name == "sqlite":
        with sqlite3.connect(tmp_path / "store" / "sessions.db") as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchall()
        conn.close()
    print(
        f"\n[{store_name}] {WORKER_KILLS} workers SIGKILLed under {WRITERS} writers:"
        f" {sum(acks)} writes acknowledged, {sum(failed)} interrupted, {lost} lost,"
        f" {unreadable} sessions unreadable over HTTP, {missing} missing from the store,"
        f" {values} stored values read, {corrupt} corrupt"
        + (f", integrity_check {integrity}" if integrity is not None else "")
    )
    if integrity is not None:
        assert integrity == [("ok",)]
    assert scanned is None or scanned == WRITERS, scanned
    assert corrupt == 0 and unreadable == 0 and missing == 0 and lost == 0
    assert values >= WRITERS * KEYS
    assert sum(failed) >= 1, "no write was interrupted: the kills landed between requests"


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
