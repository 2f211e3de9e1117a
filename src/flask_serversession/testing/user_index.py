"""The user index under interleavings and races: no live bound session escapes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..extension import ServerSession
from ..stores import Patch, Store
from .app import _interface, make_app
from .contract import _gone, _key, _record
from .doubles import HOUR, T0, PausingStore


def _manager(store: Store, now: float) -> Any:
    """The management API (``revoke_user`` as "log out everywhere" calls it) on ``store``, its
    clock stopped at ``now``."""
    app = make_app(store)
    _interface(app).clock = lambda: now
    return ServerSession.manager(app)


def _with_pause(
    run: Callable[[], object],
    set_at: Callable[[Callable[[str], None]], None],
    target: int,
    interfere: Callable[[], object],
) -> str | None:
    """Run ``run`` in a thread that stops at its ``target``-th pause point (from 0) while
    ``interfere`` runs to its end, then finishes. ``target`` -1: ``interfere`` runs first.
    The point it paused at (``"start"`` for -1), or ``None`` if it had fewer points
    (``interfere`` then ran after it ended)."""
    if target < 0:
        interfere()
        run()
        return "start"
    reached, resume = threading.Event(), threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def at(point: str) -> None:
        seen.append(point)
        if len(seen) == target + 1:
            reached.set()
            resume.wait(timeout=30)

    def work() -> None:
        try:
            run()
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)
        finally:
            reached.set()  # no such point: interfere runs after

    set_at(at)
    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert reached.wait(timeout=30), "the operation neither paused nor ended"
        interfere()
    finally:
        resume.set()
        worker.join(timeout=30)
        set_at(lambda point: None)
    if errors:
        raise errors[0]
    return seen[target] if len(seen) > target else None


#: The roles of the sessions each interleaving schedule starts with, or creates.
_INDEX_ROLES = ("anonymous2", "theirs", "mine", "regenerated", "expiring", "returning")

#: Each operation on the user index, and the operations run while it is paused.
_INDEX_OPS: dict[str, tuple[str, ...]] = {
    "login (new session)": ("list", "revoke", "expire"),
    "login (new ID)": ("list", "revoke", "expire"),
    "bind in place": ("list", "revoke", "expire"),
    "rebind from another user": ("list", "revoke"),
    "rebind back to the user": ("list", "revoke", "expire"),
    "regenerate a bound session": ("list", "revoke", "expire"),
    "list": ("login (new session)", "login (new ID)", "rebind back to the user", "revoke"),
    "revoke": ("login (new session)", "login (new ID)", "rebind back to the user"),
}


def _index_op(
    op: str, store: Store, user: str, keys: dict[str, str], extra: list[str], now: float
) -> None:
    """One operation of the interleaving schedules, on the sessions of ``keys``; a login logs
    in a session of its own, its key added to ``extra``."""
    later = now + HOUR
    if op == "login (new session)":
        key = _key()
        extra.append(key)
        assert store.create(key, _record(now=now, user_id=user))
    elif op == "login (new ID)":
        anonymous, key = _key(), _key()
        extra.append(key)
        assert store.create(anonymous, _record(now=now))
        move = Patch({}, (), now, later, new_key=key, tombstone_until=now + 60, user_id=user)
        assert store.patch(anonymous, move)
    elif op == "bind in place":
        assert store.patch(keys["anonymous2"], Patch({}, (), now, later, user_id=user))
    elif op == "rebind from another user":
        assert store.patch(keys["theirs"], Patch({}, (), now, later, user_id=user))
    elif op == "rebind back to the user":
        # Indexed under the user long ago, with an expiry since passed, then bound to another
        # user: the old entry is stale until this bind makes it current again.
        store.patch(keys["returning"], Patch({}, (), now, later, user_id=user))
    elif op == "regenerate a bound session":
        move = Patch({}, (), now, later, new_key=keys["regenerated"], tombstone_until=now + 60)
        store.patch(keys["mine"], move)  # refused if a revocation ended it first
    elif op == "list":
        store.sessions_of(user, now)
    elif op == "revoke":
        _manager(store, now).revoke_user(user)
    else:
        assert op == "expire", op
        store.clear_expired(now)  # the session that expired at T0 + 10; Redis' own expiry
        store.sessions_of(user, now)  # and the listing that then prunes it from the index


def _bound_outside_index(
    store: Store, user: str, keys: list[str], now: float
) -> tuple[list[str], list[str]]:
    """The live sessions of ``user`` among ``keys`` that ``sessions_of`` misses, and those that
    "log out everywhere" (``revoke_user``) leaves live."""
    listed = {key for key, _ in store.sessions_of(user, now)}
    bound = []
    for key in keys:
        record = store.load(key)
        if record is not None and record.is_live(now) and record.user_id == user:
            bound.append(key)
    _manager(store, now).revoke_user(user)
    return [key for key in bound if key not in listed], [
        key for key in bound if not _gone(store, key, now)
    ]


def _schedule_sessions(store: Store, user: str, other: str, now: float) -> dict[str, str]:
    """The sessions one interleaving schedule starts with, by role (:data:`_INDEX_ROLES`)."""
    keys = {role: _key() for role in _INDEX_ROLES}
    store.create(keys["anonymous2"], _record(now=now))
    store.create(keys["theirs"], _record(now=now, user_id=other))
    store.create(keys["mine"], _record(now=now, user_id=user))
    # Expired at ``now``: a listing may prune it while a login is under way.
    store.create(keys["expiring"], _record(now=T0, idle=10, user_id=user))
    # Live, bound to another user, indexed under this one with an expiry that has passed: an
    # entry a listing prunes, unless it is bound back meanwhile.
    returning = keys["returning"]
    store.create(returning, _record(now=T0, idle=10, user_id=user))
    store.patch(returning, Patch({}, (), T0 + 5, T0 + 5 + HOUR))
    store.patch(returning, Patch({}, (), T0 + 6, T0 + HOUR, user_id=other))
    return keys


def _run_schedule(
    store: Store,
    stepped: Store,
    set_at: Callable[[Callable[[str], None]], None],
    ops: tuple[str, str, int],
    n: int,
    now: float,
) -> tuple[str | None, str | None]:
    """Schedule ``n``: ``ops`` (an operation, the one run while it is paused, the pause point
    as :func:`_with_pause` takes it) on fresh sessions of a user of its own. The point it
    paused at (as :func:`_with_pause` returns it), and what escaped the index, if anything."""
    op, interference, target = ops
    user = f"user-{n}"
    keys = _schedule_sessions(store, user, f"other-{n}", now)
    extra: list[str] = []
    point = _with_pause(
        lambda: _index_op(op, stepped, user, keys, extra, now),
        set_at,
        target,
        lambda: _index_op(interference, store, user, keys, extra, now),
    )
    missed, survived = _bound_outside_index(store, user, [*keys.values(), *extra], now)
    if missed or survived:
        return point, f"{len(missed)} unlisted, {len(survived)} kept"
    return point, None


def _schedule_label(op: str, interference: str, target: int, point: str | None) -> str:
    if target < 0:
        return f"{op}, {interference} before it"
    if point is None:
        return f"{op}, {interference} after it"
    return f"{op}, {interference} at {point}"


def _login_until(store: Store, user: str, now: float, deadline: float, created: list[str]) -> None:
    """Up to 250 logins of ``user``, until ``deadline``: every other one a new bound session,
    the others an anonymous session given a new ID and the user; their keys into ``created``."""
    for i in range(250):
        if time.monotonic() > deadline:
            return
        key = _key()
        if i % 2:
            assert store.create(key, _record(now=now, user_id=user))
        else:
            anonymous = _key()
            assert store.create(anonymous, _record(now=now))
            move = Patch(
                {}, (), now, now + HOUR, new_key=key, tombstone_until=now + 60, user_id=user
            )
            assert store.patch(anonymous, move)
        created.append(key)


def _list_and_revoke(
    store: Store, manager: Any, users: list[str], now: float, revokes: bool, done: threading.Event
) -> None:
    """List the ``users``' sessions in turn until ``done``; one round in 20 "log out
    everywhere" instead if ``revokes``."""
    rounds = 0
    while not done.is_set():
        rounds += 1
        if revokes and rounds % 20 == 0:
            manager.revoke_user(users[rounds % 2])
        else:
            store.sessions_of(users[rounds % 2], now)


def _reporting(errors: list[BaseException], work: Callable[[], None]) -> threading.Thread:
    """A thread running ``work``, any exception it raises kept in ``errors``."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test, in its own thread
            errors.append(exc)

    return threading.Thread(target=run)


class UserIndexContract:
    """The ``test_store_user_index_*`` tests of :class:`StoreConformance`."""

    def stepped(self, store: Store, at: Callable[[str], None]) -> Store:
        """``store`` (the same sessions, another client) calling ``at(point)`` at each point
        where another client's calls can fall between its own steps: by default before and
        after each call. Override it for a store whose methods take several steps (a write to
        an index, then to the session) to pause between those too."""
        return PausingStore(store, at)

    def test_store_user_index_under_interleavings(self, store: Store) -> None:
        """No interleaving of a login, a listing, "log out everywhere" and expiry leaves a live
        session bound to a user outside that user's index. Each operation is paused at each
        of its points (:meth:`stepped`) while another runs to its end; after each schedule,
        every live session of the user is listed, and ``revoke_user`` ends it."""
        if not store.capabilities.by_user:
            return
        hook: list[Callable[[str], None]] = [lambda point: None]
        stepped = self.stepped(store, lambda point: hook[0](point))

        def set_at(at: Callable[[str], None]) -> None:
            hook[0] = at

        escapes: list[str] = []
        schedules = paused = 0
        for op, interferences in _INDEX_OPS.items():
            for interference in interferences:
                target = -1
                while True:
                    schedules += 1
                    ops = (op, interference, target)
                    point, escape = _run_schedule(store, stepped, set_at, ops, schedules, T0 + 20)
                    if escape is not None:
                        escapes.append(f"{_schedule_label(*ops, point)}: {escape}")
                    if point is None:
                        break
                    paused += target >= 0  # at -1 the other operation ran first
                    target += 1
        print(
            f"{schedules} schedules ({paused} inside an operation), {len(escapes)} left a"
            " bound session outside the index"
        )
        assert paused, "the operations were never paused: see stepped()"
        assert not escapes, escapes

    def test_store_user_index_under_concurrent_logins(self, store: Store) -> None:
        """Threads log in (a new bound session, or an anonymous one given a new ID and a user)
        while others list the user's sessions and "log out everywhere": at the end, every
        live session bound to a user is listed, and revoking the user ends it."""
        if not store.capabilities.by_user:
            return
        now = T0
        users = ["stress-a", "stress-b"]
        created: list[str] = []
        errors: list[BaseException] = []
        done = threading.Event()
        deadline = time.monotonic() + 2.0
        # Built here, not in the threads: Werkzeug compiles routes with ast.parse, which is
        # not thread-safe on CPython 3.11 ("AST constructor recursion depth mismatch").
        manager = _manager(store, now)
        login = partial(_login_until, store, now=now, deadline=deadline, created=created)
        logins = [_reporting(errors, partial(login, users[n % 2])) for n in range(4)]
        lister = partial(_list_and_revoke, store, manager, users, now, done=done)
        listers = [_reporting(errors, partial(lister, n == 0)) for n in range(2)]
        for thread in [*listers, *logins]:
            thread.start()
        for thread in logins:
            thread.join(timeout=60)
        done.set()
        for thread in listers:
            thread.join(timeout=60)
        assert not errors, errors
        missed: list[str] = []
        survived: list[str] = []
        for user in users:
            lost, kept = _bound_outside_index(store, user, created, now)
            missed += lost
            survived += kept
        print(
            f"{len(created)} logins racing listings: {len(missed)} live bound sessions"
            f" unlisted, {len(survived)} survived revoke_user"
        )
        assert created and not missed and not survived
