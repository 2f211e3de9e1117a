"""The tutorial app runs as ``make demo`` runs it, and behaves as the tutorial shows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_tutorial_app_serves_the_tutorial_flow(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, PORT=str(port))
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "tutorial" / "app.py")],
        env=env,
        cwd=tmp_path,  # Flask puts a script's instance folder (the SQLite file) here
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        base = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                opener.open(base + "/getsession", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the demo did not start in 30 s"
                time.sleep(0.1)

        def get(path: str) -> str:
            with opener.open(base + path, timeout=5) as response:
                body: bytes = response.read()
                return body.decode()

        assert get("/getsession") == "Welcome Anonymous"
        assert get("/setsession") == "The session has been Set"
        assert get("/getsession") == "Welcome Admin"
        assert get("/popsession") == "Session Deleted"
        assert get("/getsession") == "Welcome Anonymous"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
