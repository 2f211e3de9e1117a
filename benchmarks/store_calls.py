"""What reaches the store, for run.py: the commands each kind of request sends to Redis (seen by
the server's ``MONITOR``) or to SQL (SQLAlchemy's events), the memory of one stored Redis
session; and their report sections.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import harness as h
from report import Section, columns, rows_of
from sqlalchemy import event
from variants import redis_admin

SAMPLE = json.dumps(h.LOGIN)
#: MEMORY USAGE of Flask-Session's Redis session for the sample session, measured earlier.
REFERENCE_FLASK_SESSION_MEMORY = 152
#: The store calls issues 3 and 4 require of ours per kind of request (``/rw`` reads, writes).
EXPECTED_CALLS = {"none": 0, "get": 1, "set": 1, "rw": 2}


def _count(running: h.Running, counting: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    """What ``counting()`` saw for one request of each kind, after one not counted."""
    counted = {}
    for endpoint in EXPECTED_CALLS:
        h.request_text(running.client, "/" + endpoint)
        with counting() as (sent, in_scripts):
            h.request_text(running.client, "/" + endpoint)
        counted[endpoint] = {
            "calls": sum(n for name, n in sent.items() if name != "COMMIT"),
            "sent": dict(sorted(sent.items())),
            "in_scripts": dict(sorted(in_scripts.items())),
            "expected": EXPECTED_CALLS[endpoint] if running.name.startswith("ours-") else None,
        }
    return counted


def _command_name(line: str) -> str:
    """``EVALSHA 1f0c... 1 key`` -> ``EVALSHA``; ``SCRIPT LOAD ...`` -> ``SCRIPT LOAD``."""
    words = line.split(" ", 2)
    name = words[0].upper()
    if name in ("SCRIPT", "CLIENT", "CONFIG", "MEMORY", "OBJECT") and len(words) > 1:
        name += " " + words[1].upper()
    return name


@contextmanager
def _monitored(admin: Any, monitor: Any) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """Commands ``MONITOR`` shows between two ``ECHO`` markers: sent by clients, run by scripts."""

    def until(marker: str, sent: Counter[str], in_scripts: Counter[str]) -> None:
        admin.echo(marker)
        while True:
            command = monitor.next_command()
            name = _command_name(command["command"])
            if name == "ECHO" and marker in command["command"]:
                return
            if name not in ("INFO", "ECHO"):
                (in_scripts if command["client_type"] == "lua" else sent)[name] += 1

    until("bench-before", Counter(), Counter())
    sent, in_scripts = Counter[str](), Counter[str]()
    yield sent, in_scripts
    until("bench-after", sent, in_scripts)


@contextmanager
def _statements(engine: Any) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """Statements SQLAlchemy sends, by first word (``WITH``: our read with its touch); COMMITs."""
    sent = Counter[str]()

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent[(statement.split(None, 1) or ["?"])[0].upper()] += 1

    def commit(conn: Any) -> None:
        sent["COMMIT"] += 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", commit)
    try:
        yield sent, Counter()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "commit", commit)


def count_all(runnings: list[h.Running], servers: h.Servers) -> dict[str, Any]:
    """After the timed rounds (MONITOR slows them): store calls and Redis memory per variant."""
    counted: dict[str, Any] = {"store_calls": {}, "memory": {}}
    for running in runnings:
        if running.built.redis_prefix is not None:
            port = servers.require("redis")
            with redis_admin(port) as admin, redis_admin(port) as watcher:
                with watcher.monitor() as monitor:
                    calls = _count(running, functools.partial(_monitored, admin, monitor))
            counted["store_calls"][running.name] = calls
            counted["memory"][running.name] = measure_memory(running, port)
        if running.built.engine is not None:
            counting = functools.partial(_statements, running.built.engine)
            counted["store_calls"][running.name] = _count(running, counting)
    return counted


def measure_memory(running: h.Running, port: int) -> dict[str, Any]:
    """``MEMORY USAGE`` of the key one fresh login stores, and what the key holds."""
    prefix = f"{running.built.redis_prefix}*"
    with redis_admin(port) as admin:
        before = set(admin.scan_iter(match=prefix, count=1000))
        h.request_text(running.built.app.test_client(), "/login")
        new = set(admin.scan_iter(match=prefix, count=1000)) - before
        if len(new) != 1:
            raise h.BenchmarkError(f"{running.name}: a login stored {len(new)} keys")
        key = new.pop()
        kind = admin.type(key)
        if kind == "hash":
            fields: dict[str, str] = admin.hgetall(key)
            payload = sum(len(name.encode()) + len(text.encode()) for name, text in fields.items())
            shape = f"hash of {len(fields)} fields: " + ", ".join(sorted(fields))
        else:
            payload = int(admin.strlen(key))
            shape = f"{kind} of {payload} bytes"
        return {
            # SAMPLES 0: every element counted, not an estimate.
            "memory_usage_bytes": int(admin.memory_usage(key, samples=0)),
            "key_length": len(key.encode()),
            "stored_bytes": payload,
            "type": kind,
            "encoding": admin.object("encoding", key),
            "shape": shape,
            "ttl_seconds": int(admin.ttl(key)),
        }


# -- report sections -----------------------------------------------------------------------------


def _expected(row: dict[str, Any]) -> str:
    """A count against what an issue requires: ``1 ok``, ``1 **MISSED**``, or ``-``."""
    if row["expected"] is None:
        return "-"
    return f"{row['expected']} {'ok' if row['calls'] == row['expected'] else '**MISSED**'}"


CALL_COLUMNS = columns("variant: {variant} | endpoint: /{endpoint} | store calls: {calls}")
CALL_COLUMNS += [("expected", _expected)]
CALL_COLUMNS += columns("sent: {sent:counts} | in scripts: {in_scripts:counts}")
CALLS_TEXT = (
    "One request of each kind, after one not counted (the touch not due). Redis (`MONITOR`):"
    " *store calls* are the commands a client sent (a round trip each), *in scripts* those its"
    " Lua scripts ran. SQL: the statements SQLAlchemy sent, and under *sent* its COMMITs (our"
    " read is a plain SELECT). *expected*: what issues 3 and 4 require of ours."
)
MEMORY_COLUMNS = columns(
    "variant: {variant} | MEMORY USAGE: {memory_usage_bytes} B | key length: {key_length}"
    " | stored bytes: {stored_bytes} | type, encoding: {type}, {encoding} | stored as: {shape}"
)
MEMORY_TEXT = (
    f"`MEMORY USAGE key SAMPLES 0` of the key one login stores for `{SAMPLE}` (the key's own"
    f" bytes included; Flask-Session measured {REFERENCE_FLASK_SESSION_MEMORY} bytes earlier)."
)


def sections(run: dict[str, Any]) -> list[Section]:
    """The store calls and memory parts of run.py's report."""
    calls, memory = run["store_calls"], run["memory"]
    rows = rows_of(calls, "variant", "endpoint")
    found = [Section("Store calls per request", [CALLS_TEXT], CALL_COLUMNS, "llrrll", rows)]
    rows = rows_of(memory, "variant")
    found += [Section("Memory per stored session", [MEMORY_TEXT], MEMORY_COLUMNS, "lrrrll", rows)]
    return [part for part, shown in zip(found, (calls, memory), strict=True) if shown]
