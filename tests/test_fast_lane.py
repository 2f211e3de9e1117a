"""`make check` (``pytest -m "not slow"``) still runs the whole conformance suite on the
embedded stores, and leaves out PostgreSQL and MariaDB (conftest.py marks their tests slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask_serversession.testing import StoreConformance

ROOT = Path(__file__).resolve().parent.parent


def _conformance_tests() -> int:
    """How many tests pytest makes of :class:`StoreConformance` for one store."""
    count = 0
    for name in dir(StoreConformance):
        if name.startswith("test_"):
            cases = 1
            for mark in getattr(getattr(StoreConformance, name), "pytestmark", []):
                if mark.name == "parametrize":
                    cases *= len(mark.args[1])
            count += cases
    return count


def test_the_fast_lane_keeps_embedded_conformance_and_leaves_out_sql_servers() -> None:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    files = [
        "tests/test_conformance.py",
        "tests/test_sql.py",
        "tests/test_sql_operations.py",
        "tests/test_sql_setup.py",
        "tests/test_http.py",
    ]
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
    assert not [test_id for test_id in ids if "PostgreSQL" in test_id or "MariaDB" in test_id]
    assert not [test_id for test_id in ids if "postgresql]" in test_id or "mariadb]" in test_id]
    assert "deselected" in result.stdout  # said, never silent
