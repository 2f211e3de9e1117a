"""`make check` (``pytest -m "not slow"``) still runs the whole conformance suite on the
embedded stores, and leaves out PostgreSQL and MariaDB (conftest.py marks their tests slow)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from flask_serversession.testing import StoreConformance
from flask_serversession.testing.app import TRANSPORTS

ROOT = Path(__file__).resolve().parent.parent


#: The fixtures through which a test runs once per transport (the ``transport`` fixture's
#: params: cookie and header).
_PER_TRANSPORT = {"transport", "app", "client"}


def _conformance_tests() -> int:
    """How many tests pytest makes of :class:`StoreConformance` for one store."""
    count = 0
    for name in dir(StoreConformance):
        if name.startswith("test_"):
            test = getattr(StoreConformance, name)
            cases = 1
            for mark in getattr(test, "pytestmark", []):
                if mark.name == "parametrize":
                    cases *= len(mark.args[1])
            if _PER_TRANSPORT & set(inspect.signature(test).parameters):
                cases *= len(TRANSPORTS)
            count += cases
    return count


def test_the_fast_lane_keeps_embedded_conformance_and_leaves_out_sql_servers() -> None:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    files = ["tests/test_conformance.py", "tests/test_sql.py", "tests/test_http.py"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [*command, "-m", "not slow", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    for store in ("TestMemoryStore", "TestSQLiteStore"):
        kept = [test_id for test_id in ids if f"::{store}::" in test_id]
        assert len(kept) == _conformance_tests(), store
        assert [test_id for test_id in kept if "[header" in test_id], store  # both transports
    assert not [test_id for test_id in ids if "PostgreSQL" in test_id or "MariaDB" in test_id]
    assert not [test_id for test_id in ids if "postgresql]" in test_id or "mariadb]" in test_id]
    assert "deselected" in result.stdout  # said, never silent
