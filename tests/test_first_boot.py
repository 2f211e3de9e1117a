"""The default store on a first deploy: several processes (gunicorn workers booting) create and
open the same new SQLite file at the same moment, every time (issue 14, item 1)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Record
from flask_serversession.stores.sqlite import SQLiteStore

PROCESSES = 6
TRIALS = 25


def _boot(path: str, barrier: Any, results: Any) -> None:
    """One worker booting: open the store (it makes the file and its schema if need be), then
    store a session in it."""
    try:
        barrier.wait(10)
        store = SQLiteStore(path)
        now = time.time()
        key = store_key(new_session_id())
        assert store.create(key, Record({"a": "1"}, now, now, now + 60, now + 60))
        assert store.load(key) is not None
        store.close()
        results.put("ok")
    except BaseException as exc:  # reported to the test, whatever it is
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_file_at_once_all_boot(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    for trial in range(TRIALS):
        path = str(tmp_path / f"trial{trial}.db")
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        workers = [
            context.Process(target=_boot, args=(path, barrier, results)) for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
        failures += [outcome for outcome in outcomes if outcome != "ok"]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT count(*) FROM serversession").fetchone()[0] == (
                PROCESSES - len([o for o in outcomes if o != "ok"])
            )
    assert failures == [], f"{len(failures)} of {TRIALS * PROCESSES} boots failed: {failures[:3]}"
