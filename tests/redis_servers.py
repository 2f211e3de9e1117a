"""Real Redis topologies for the tests: standalone, a 3-master Cluster, master + replica + Sentinel.

Every process listens on 127.0.0.1 only, on a free port, in a temp dir, and is stopped by PID.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from servers import ServerProcess, free_port, port_open, require_binary


def _redis_server() -> str:
    return require_binary("redis-server", "redis-server")


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and not port_open(port + 10000):
            return port


def redis_process(workdir: Path, *args: str, name: str = "redis") -> ServerProcess:
    """One redis-server on 127.0.0.1 and a free port, not started yet."""
    port = _cluster_port() if "--cluster-enabled" in args else free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        _redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
        *args,
    ]
    return ServerProcess(f"{name}-{port}", argv, port, workdir, ready=lambda: _ping(port))


@contextmanager
def standalone(workdir: Path, *args: str) -> Iterator[ServerProcess]:
    server = redis_process(workdir, *args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def cluster(workdir: Path, masters: int = 3) -> Iterator[list[ServerProcess]]:
    """``masters`` cluster nodes with all 16384 slots spread over them, no replicas."""
    require_binary("redis-cli", "redis-tools")
    nodes = [
        redis_process(
            workdir / f"node{i}",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            name="cluster",
        )
        for i in range(masters)
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(node.port) for node in nodes):
            assert time.monotonic() < deadline, "cluster did not reach state ok"
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _cluster_ok(port: int) -> bool:
    info = redis.Redis(port=port, socket_timeout=1, decode_responses=True).cluster("INFO")
    return bool(info.get("cluster_state") == "ok")


_DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


class SentinelSetup:
    """A master, one replica and one sentinel watching them as ``mymaster``.

    Both servers keep an fsynced append-only file. A master without persistence that restarts
    comes back empty *as a master*; if the sentinel then fails over to it before converting it
    (as a second, spurious failover on a loaded machine does), the replica holding the data
    resyncs from it and everything is gone. Redis documents this: disable auto-restart or keep
    persistence. Seen in CI: a spurious "+sdown" of the new master 1 s after the switch.
    """

    service = "mymaster"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = redis_process(workdir / "master", *_DURABLE, name="master")
        self.replica: ServerProcess | None = None
        self.sentinel: ServerProcess | None = None

    def start(self) -> None:
        self.master.start()
        self.replica = redis_process(
            self.workdir / "replica",
            *_DURABLE,
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
            name="replica",
        )
        self.replica.start()
        port = free_port()
        sentinel_dir = self.workdir / "sentinel"
        sentinel_dir.mkdir(parents=True, exist_ok=True)
        conf = sentinel_dir / "sentinel.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {sentinel_dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 4000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.sentinel = ServerProcess(
            f"sentinel-{port}",
            [_redis_server(), str(conf), "--sentinel"],
            port,
            sentinel_dir,
            ready=lambda: self._sentinel_sees_replica(port),
        )
        self.sentinel.start()

    def _sentinel_sees_replica(self, port: int) -> bool:
        """Ready: the sentinel knows the replica, and the replica has caught up."""
        try:
            client: Any = redis.Redis(port=port, socket_timeout=0.5, decode_responses=True)
            replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
            master = redis.Redis(port=self.master.port, socket_timeout=0.5)
            info = master.info("replication")
        except redis.RedisError:
            return False
        slave = info.get("slave0")
        return bool(replicas) and isinstance(slave, dict) and slave.get("state") == "online"

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def current_master_port(self) -> int:
        assert self.sentinel is not None
        client: Any = redis.Redis(port=self.sentinel.port, socket_timeout=1, decode_responses=True)
        _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def failover(self, seconds: float = 30) -> None:
        """Ask the sentinel for a failover now, retrying while it has none it can start."""
        assert self.sentinel is not None
        client: Any = redis.Redis(port=self.sentinel.port, socket_timeout=1)
        deadline = time.monotonic() + seconds
        while True:
            try:
                client.execute_command("SENTINEL", "FAILOVER", self.service)
                return
            except redis.ResponseError as error:  # NOGOODSLAVE or INPROG, for now
                if time.monotonic() > deadline:
                    raise AssertionError(f"the sentinel started no failover: {error}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        for process in (self.sentinel, self.replica, self.master):
            if process is not None:
                process.stop()


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    openssl = require_binary("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key")}

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return files


@contextmanager
def tls_standalone(workdir: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """A redis-server that speaks TLS only; yields it and the CA certificate to trust."""
    certs = make_certificates(workdir / "certs")
    port = free_port()
    argv = [
        _redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--dir", str(workdir), "--save", "", "--tls-auth-clients", "no",
        "--tls-cert-file", str(certs["server.crt"]), "--tls-key-file", str(certs["server.key"]),
        "--tls-ca-cert-file", str(certs["ca.crt"]),
    ]  # fmt: skip
    server = ServerProcess(f"redis-tls-{port}", argv, port, workdir)
    server.start()
    try:
        yield server, certs["ca.crt"]
    finally:
        server.stop()
