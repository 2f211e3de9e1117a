"""Real servers for the tests: started on 127.0.0.1 with a free port and a temp dir, stopped by PID.

A test that needs a server binary that is not installed is skipped with the reason; under
``CI=true`` that skip is a failure instead, because CI must test every store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, *extra_dirs: str) -> str | None:
    """The path of ``name`` on PATH or in one of ``extra_dirs``, or None."""
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_binary(name: str, package: str, *extra_dirs: str) -> str:
    """The binary's path; skip the test (fail it under CI) when it is not installed."""
    path = find_binary(name, *extra_dirs)
    if path is None:
        message = f"{name} not installed (Debian package {package}; make test installs it as root)"
        if IN_CI:
            pytest.fail(f"CI must not skip a store: {message}")
        pytest.skip(message)
    return path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """One server process. ``argv`` must make it listen on 127.0.0.1:``port`` only."""

    #: The signal that shuts the server down cleanly.
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        workdir: Path,
        *,
        ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.workdir = workdir
        self.ready = ready or (lambda: port_open(port))
        self.env = env
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            user=self.user,
            start_new_session=True,  # our signals only, never the test runner's
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> None:
        """``stop_signal`` by PID, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, self.stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL by PID: a crash, not a shutdown."""
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
