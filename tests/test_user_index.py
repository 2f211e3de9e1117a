"""Issue 13, item 1, end to end: "log out everywhere else" ends a session logged in while the
devices page was being read, in the accounts example (examples/accounts/app.py) on Redis.

The store-level proofs are in the conformance suite (flask_serversession.testing:
``test_store_user_index_under_interleavings``, every schedule of a login, a listing, a revoke
and an expiry, paused between the Redis store's own steps by tests/stepped_redis.py; and
``test_store_user_index_under_concurrent_logins``), run on every store with a user index.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask
from flask.testing import FlaskClient
from servers import ServerProcess
from test_accounts_example import client, devices_page, logged_in, login

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def accounts() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "accounts_example_app_index", ROOT / "examples" / "accounts" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the templates next to the module's file
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_log_out_everywhere_else_ends_logins_racing_the_devices_page(
    accounts: ModuleType, redis_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker with the password logs in again and again while the victim's devices page
    refreshes; then the victim clicks "Log out everywhere else". Every attacker session ends,
    and none was ever hidden from the devices page."""
    # The race is between the store's steps, not in the password check: a deliberately slow
    # hash (0.1 s) would leave a few dozen logins in the time this test has.
    known = {accounts.USERS["alice"]["password"]: "wonderland"}
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: known.get(h) == p)
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    app: Flask = accounts.create_app(
        {
            "TESTING": True,
            "SESSION_STORE": f"redis://127.0.0.1:{redis_server.port}/0?prefix={prefix}",
        }
    )
    victim = client(app)
    login(victim)
    attackers: list[FlaskClient] = []
    errors: list[BaseException] = []
    done = threading.Event()
    deadline = time.monotonic() + 3.0

    def attack() -> None:
        try:
            while time.monotonic() < deadline and len(attackers) < 600:
                browser = client(app)
                login(browser)
                attackers.append(browser)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def refresh() -> None:
        watcher = client(app)
        login(watcher)  # the victim's second tab, say: the same user
        try:
            while not done.is_set():
                devices_page(watcher)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attack) for _ in range(3)]
    refreshers = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in [*refreshers, *threads]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    for thread in refreshers:
        thread.join(timeout=60)
    assert not errors, errors
    token, rows = devices_page(victim)
    listed = len(rows)
    response = victim.post("/devices/end-others", data={"csrf_token": token})
    assert response.status_code == 302
    survivors = sum(1 for browser in attackers if logged_in(browser))
    print(
        f"{len(attackers)} attacker logins racing the devices page: {listed} devices listed"
        f" (of {len(attackers) + 3}), {survivors} survived 'Log out everywhere else'"
    )
    assert attackers and survivors == 0
    assert listed == len(attackers) + 3  # the victim, its second tabs, every attacker
    assert logged_in(victim)
