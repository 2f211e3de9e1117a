"""Memcached processes for the tests: 127.0.0.1, a free port, TCP only; stopped by PID."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import ServerProcess, free_port, require_binary


def memcached_process(workdir: Path, *extra: str) -> ServerProcess:
    """One memcached on 127.0.0.1 and a free port, TCP only, 64 MB; not started yet."""
    binary = require_binary("memcached", "memcached")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", *extra]
    if os.geteuid() == 0:  # memcached refuses to run as root without -u
        argv += ["-u", _unprivileged_user()]
    return ServerProcess(f"memcached-{port}", argv, port, workdir)


def _unprivileged_user() -> str:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "root"
    return "nobody"


@contextmanager
def running(workdir: Path, count: int = 1, *extra: str) -> Iterator[list[ServerProcess]]:
    """``count`` memcached processes, stopped by PID however the test ends."""
    servers: list[ServerProcess] = []
    try:
        for n in range(count):
            server = memcached_process(workdir / f"m{n}", *extra)
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
