"""A real, throwaway `redis-server` on a free loopback port, for the rate-limiter tests.

No persistence (``--save '' --appendonly no``), its working files in a temp dir, bound to
127.0.0.1 only. A missing binary is an error, never a skip: CI installs the Debian package
``redis-server`` and a silently skipped Redis suite would hide a broken shared limiter.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

INSTALL_HINT = "install it with: apt-get update && apt-get install -y redis-server"


def redis_server_binary() -> str:
    """Path of redis-server ($REDIS_SERVER overrides PATH); raises with a clear message."""
    explicit = os.environ.get("REDIS_SERVER")
    found = explicit or shutil.which("redis-server")
    if not found or not os.access(found, os.X_OK):
        where = f"$REDIS_SERVER={explicit!r}" if explicit else "PATH"
        raise RuntimeError(f"redis-server not found on {where}; {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``start()`` / ``stop()`` can be repeated: a restart keeps the port (and loses data)."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ora-redis-")
        self._log = Path(self._dir.name) / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self, timeout: float = 10.0) -> None:
        assert self._proc is None, "already running"
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--logfile", str(self._log),  # a file, not a pipe nobody drains
        ]
        self._proc = subprocess.Popen(
            argv, cwd=self._dir.name, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait_for_ping(timeout)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def _wait_for_ping(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    self._proc = None
                    raise RuntimeError(f"redis-server exited early:\n{self._output()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout}s")

    def _output(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def start_redis_server(attempts: int = 3) -> RedisServer:
    """A running server; retries on a new port if another process grabbed the free one."""
    error: Exception | None = None
    for _ in range(attempts):
        server = RedisServer()
        try:
            server.start()
            return server
        except RuntimeError as exc:
            server.close()
            error = exc
    raise RuntimeError(f"could not start redis-server: {error}")
