"""Timing session loads against stores of many sizes: what scale_bench.py (SQLite, Redis) and
sql_bench.py (PostgreSQL, MariaDB) share.

Sessions are reproducible from a tag and an index (their ID, their user), so a store bulk-loaded
with a million of them can be read back at random. A measurement prepares all its calls before
any clock runs, times each call on its own with the store sizes interleaved call by call, and
checks every answer after the clocks stopped.
"""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from flask.testing import FlaskClient
from harness import SECRET_KEY, BenchmarkError, rotated

from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.stores import Record, Store, Touch

#: The mode that times ``GET /get`` through the test client; every other mode times
#: ``store.load`` with the touch the caller gives.
TESTCLIENT_GET = "testclient-get"

Prepared = tuple[list[Callable[[], Any]], Callable[[list[Any]], None]]


class Target(Protocol):
    """A store of ``size`` reproducible sessions (of ``tag``) and a client of an app on it."""

    @property
    def size(self) -> int: ...
    @property
    def tag(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def store(self) -> Store: ...
    @property
    def client(self) -> FlaskClient: ...


def session_id_of(tag: str, index: int) -> str:
    """A reproducible session ID (43 URL-safe characters, like a real one) for ``index``."""
    digest = hashlib.sha256(f"bench:{tag}:{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def user_of(index: int) -> str:
    return f"user{index}"


@functools.cache
def _signer() -> CookieSigner:
    return CookieSigner([SECRET_KEY])


def cookie_header(session_id: str) -> dict[str, str]:
    """The request header of a browser holding the session's cookie."""
    return {"Cookie": f"session={_signer().sign(session_id)}"}


def verify_sample(target: Target, rng: random.Random) -> None:
    """The first, the last and 20 random sessions read back, directly and through the app."""
    now = time.time()
    for index in [0, target.size - 1, *(rng.randrange(target.size) for _ in range(20))]:
        session_id = session_id_of(target.tag, index)
        record = target.store.load(store_key(session_id))
        if record is None or not record.is_live(now):
            raise BenchmarkError(f"{target.label}: session {index} is not live")
        if record.values.get("user") != json.dumps(user_of(index)):
            raise BenchmarkError(f"{target.label}: session {index} holds {record.values!r}")
        response = target.client.get("/get", headers=cookie_header(session_id), buffered=True)
        body = response.get_data(as_text=True)
        if response.status_code != 200 or body != user_of(index):
            raise BenchmarkError(
                f"{target.label}: /get of session {index} answered {response.status} {body!r}"
            )


def prepare_calls(
    target: Target, mode: str, indices: Sequence[int], touch: Callable[[float], Touch]
) -> Prepared:
    """The calls of one measurement, made before any clock runs, and the check of their
    answers (run after the clocks stopped). A load mode loads with ``touch(now)``."""
    if mode == TESTCLIENT_GET:
        get = target.client.get
        calls: list[Callable[[], Any]] = [
            functools.partial(
                get, "/get", headers=cookie_header(session_id_of(target.tag, i)), buffered=True
            )
            for i in indices
        ]

        def check_responses(answers: list[Any]) -> None:
            for index, response in zip(indices, answers, strict=True):
                body = response.get_data(as_text=True)
                if response.status_code != 200 or body != user_of(index):
                    raise BenchmarkError(
                        f"{target.label}: /get answered {response.status} {body!r}"
                    )

        return calls, check_responses

    now = time.time()
    load = target.store.load
    calls = [
        functools.partial(load, store_key(session_id_of(target.tag, i)), touch(now))
        for i in indices
    ]

    def check_records(records: list[Any]) -> None:
        for index, record in zip(indices, records, strict=True):
            if not isinstance(record, Record) or not record.is_live(now):
                raise BenchmarkError(f"{target.label}: load of {index} found no live session")
            if record.values["user"] != json.dumps(user_of(index)):
                raise BenchmarkError(f"{target.label}: load of {index} read {record.values!r}")

    return calls, check_records


def time_interleaved(
    targets: Sequence[Target],
    mode: str,
    calls: int,
    rng: random.Random,
    shift: int,
    touch: Callable[[float], Touch],
) -> dict[int, list[float]]:
    """``calls`` calls per store size, each on a session drawn at random from its whole store,
    interleaved call by call (the order rotated at each step) and each timed: whatever disturbs
    the machine hits every size alike. µs per call, per size."""
    prepared = {
        t.size: prepare_calls(t, mode, [rng.randrange(t.size) for _ in range(calls)], touch)
        for t in targets
    }
    times: dict[int, list[float]] = {t.size: [] for t in targets}
    answers: dict[int, list[Any]] = {t.size: [] for t in targets}
    sizes = [t.size for t in targets]
    clock = time.perf_counter
    gc.collect()
    for step in range(calls):
        for size in rotated(sizes, step + shift):
            call = prepared[size][0][step]
            started = clock()
            answer = call()
            times[size].append(clock() - started)
            answers[size].append(answer)
    for size, (_, check) in prepared.items():
        check(answers[size])
    return {size: [t * 1e6 for t in values] for size, values in times.items()}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
