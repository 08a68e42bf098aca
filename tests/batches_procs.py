"""Real processes for the batch tests: `openrouter-anthropic serve` and `worker`, and a real
`prefect server start`, each on free loopback ports with their files in a temp dir.

Also what the tests read off a process from /proc: peak memory, listening ports, children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import yaml

from batches_pg import free_port

CLI = [sys.executable, "-m", "openrouter_anthropic"]
CLIENT_KEY = "batch-test-key"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect or gateway settings the tests did not choose."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "OPENROUTER_"))
           and k not in ("PROXY_API_KEYS", "BIG_MODEL", "SMALL_MODEL")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A subprocess with its output in a log file (read back when something fails)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.log_path.parent,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL to the process alone: no cleanup, no flush (children are not touched)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The whole session: a Prefect worker's flow-run processes go with it.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class ServerProc(Proc):
    """`openrouter-anthropic serve --config FILE` on a free port."""

    def __init__(self, workdir: Path, upstream: str, batches: dict[str, Any],
                 name: str = "serve", env: dict[str, str] | None = None,
                 **settings: Any) -> None:
        self.port = free_port()
        config = {"openrouter_base_url": upstream, "openrouter_api_key": "upstream-key",
                  "fetch_model_list": False, "proxy_api_keys": [CLIENT_KEY],
                  "batches": batches, "log_level": "info", **settings}
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        super().__init__(name, [*CLI, "serve", "--config", str(self.config_path), "--port",
                                str(self.port)], env or clean_env(), workdir)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> ServerProc:
        self.spawn()

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            try:
                return httpx2.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(ready, timeout, f"{self.name} to answer /health")
        return self

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 2, "timeout": 30.0}
        return anthropic.Anthropic(base_url=self.url, **{**options, **kwargs})


class PrefectServer(Proc):
    """A real `prefect server start` (PREFECT_HOME in the temp dir, no UI, no analytics)."""

    def __init__(self, workdir: Path, database_url: str | None = None) -> None:
        self.port = free_port()
        self.home = workdir / "prefect-home"
        self.home.mkdir(exist_ok=True)
        env = clean_env(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        PREFECT_SERVER_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
        if database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url.replace(
                "postgresql://", "postgresql+asyncpg://", 1)
        prefect = str(Path(sys.executable).parent / "prefect")
        super().__init__("prefect-server", [prefect, "server", "start", "--host", "127.0.0.1",
                                            "--port", str(self.port)], env, workdir)
        self.api_url = f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 90) -> PrefectServer:
        self.spawn()

        def healthy() -> bool:
            if not self.alive():
                raise AssertionError(f"prefect server exited:\n{self.log()}")
            try:
                return httpx2.get(f"{self.api_url}/health", timeout=2).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(healthy, timeout, "prefect server /api/health", interval=0.2)
        return self

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a Prefect client (our server, a worker) of this server."""
        return clean_env(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.home),
                         PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx2.request(method, f"{self.api_url}{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()


# ---------------------------------------------------------------- /proc readings


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (sockets it holds, matched by inode)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def loaded_modules(pid: int) -> str:
    """The files the process has mapped (a loaded C extension shows up here)."""
    return Path(f"/proc/{pid}/maps").read_text()
