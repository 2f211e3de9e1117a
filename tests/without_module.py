"""Run Python code in a fresh interpreter in which one package cannot be imported: how the
tests show that an optional part (msgspec, the migration plug-in) is truly optional."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_BLOCKER = """
import importlib.abc
import sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ImportError(f"{{name}} is blocked by the test")
        return None

sys.meta_path.insert(0, _Block())
"""


def run_without(blocked: str, code: str) -> str:
    """Run ``code`` (dedented) with warnings as errors and ``blocked`` (a module or package)
    unimportable, on this interpreter's path; fail with its stderr if it fails, else return
    its standard output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    program = _BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", program],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
