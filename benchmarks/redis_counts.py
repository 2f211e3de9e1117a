"""What reaches Redis: the commands each kind of request sends, seen by the server's
``MONITOR``, and the memory one stored session takes (``MEMORY USAGE``), with their report
sections. For run.py's Redis variants; http_bench.py and scale_bench.py read the server's
version here too.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from harness import (
    CART,
    COUNT_ENDPOINTS,
    HOST,
    USER,
    BenchmarkError,
    Running,
    expected_calls,
    request_text,
)
from report import Section, rows_of

SAMPLE = json.dumps({"user": USER, "cart": CART})
#: MEMORY USAGE of Flask-Session's Redis session for the sample session, measured earlier.
REFERENCE_FLASK_SESSION_MEMORY = 152


def redis_admin(port: int) -> Any:
    """A separate redis-py client for the benchmark's own look-ups (never a variant's client)."""
    import redis

    return redis.Redis(host=HOST, port=port, decode_responses=True)


def redis_version(port: int) -> str:
    with redis_admin(port) as admin:
        return str(admin.info("server")["redis_version"])


# -- counting what reaches Redis -----------------------------------------------------------------


def _command_name(line: str) -> str:
    """``EVALSHA 1f0c... 1 key`` -> ``EVALSHA``; ``SCRIPT LOAD ...`` -> ``SCRIPT LOAD``."""
    words = line.split(" ", 2)
    name = words[0].upper()
    if name in ("SCRIPT", "CLIENT", "CONFIG", "MEMORY", "OBJECT") and len(words) > 1:
        name += " " + words[1].upper()
    return name


def _seen_until(admin: Any, monitor: Any, marker: str) -> tuple[Counter[str], Counter[str]]:
    """Commands MONITOR showed up to ``marker``: sent by clients, run in scripts."""
    admin.echo(marker)
    sent: Counter[str] = Counter()
    in_scripts: Counter[str] = Counter()
    while True:
        command = monitor.next_command()
        name = _command_name(command["command"])
        if name == "ECHO" and marker in command["command"]:
            return sent, in_scripts
        if name not in ("INFO", "ECHO"):
            (in_scripts if command["client_type"] == "lua" else sent)[name] += 1


def _count_one(running: Running, admin: Any, monitor: Any, endpoint: str) -> dict[str, Any]:
    path = "/" + endpoint
    request_text(running.client, path)  # connections made, scripts loaded: not counted
    _seen_until(admin, monitor, f"bench-before-{endpoint}")
    request_text(running.client, path)
    sent, in_scripts = _seen_until(admin, monitor, f"bench-after-{endpoint}")
    return {
        "calls": sum(sent.values()),
        "sent": dict(sorted(sent.items())),
        "in_scripts": dict(sorted(in_scripts.items())),
        "expected": expected_calls(running.name, endpoint),
    }


def count_round_trips(running: Running, port: int) -> dict[str, dict[str, Any]]:
    """For one request of each kind, the commands that reached Redis, as ``MONITOR`` shows them:
    those a client sent (a round trip each, as redis-py pipelines nothing here) apart from
    those a Lua script ran. tests/test_redis.py pins ours' counts; this shows them next to
    Flask-Session's."""
    with redis_admin(port) as admin, redis_admin(port) as watcher:
        admin.ping()
        with watcher.monitor() as monitor:
            return {e: _count_one(running, admin, monitor, e) for e in COUNT_ENDPOINTS}


def measure_memory(running: Running, port: int) -> dict[str, Any]:
    """``MEMORY USAGE`` of the key one fresh login stores (``{"user": "alice", "cart": [1, 2, 3]}``)
    and what the key holds."""
    prefix = f"{running.built.redis_prefix}*"
    with redis_admin(port) as admin:
        before = set(admin.scan_iter(match=prefix, count=1000))
        request_text(running.built.app.test_client(), "/login")
        new = set(admin.scan_iter(match=prefix, count=1000)) - before
        if len(new) != 1:
            raise BenchmarkError(f"{running.name}: a login stored {len(new)} keys")
        key = new.pop()
        kind = admin.type(key)
        if kind == "hash":
            fields: dict[str, str] = admin.hgetall(key)
            payload = sum(
                len(name.encode()) + len(value.encode()) for name, value in fields.items()
            )
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


MEMORY_COLUMNS = (
    ("variant", "{variant}"),
    ("MEMORY USAGE", "{memory_usage_bytes} B"),
    ("key length", "{key_length}"),
    ("stored bytes", "{stored_bytes}"),
    ("type, encoding", "{type}, {encoding}"),
    ("stored as", "{shape}"),
)


def memory_section(memory: dict[str, dict[str, Any]]) -> Section:
    if not memory:
        return Section()
    text = (
        f"`MEMORY USAGE key SAMPLES 0` of the key one login stores for `{SAMPLE}` (the key's own"
        f" bytes included; Flask-Session measured {REFERENCE_FLASK_SESSION_MEMORY} bytes earlier)."
    )
    rows = rows_of(memory, "variant")
    return Section("Memory per stored session", [text], MEMORY_COLUMNS, "lrrrll", rows)
