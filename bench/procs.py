"""Child processes of the benchmark: start, wait until ready, measure (/proc), stop.

Every child starts in its own process group and is registered; `cleanup()` runs at exit
and on SIGINT/SIGTERM, so nothing outlives the run.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_live: list[subprocess.Popen[bytes]] = []


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int) -> Proc:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    _live.append(popen)
    return Proc(name, popen, log, port)


def track(popen: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Register a child started elsewhere (py-spy) for cleanup."""
    _live.append(popen)
    return popen


def wait_ready(proc: Proc, path: str, timeout: float = 20.0) -> float:
    """Poll GET `path` until it answers 200; return seconds since `proc` was spawned."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; "
                               f"see {proc.log}")
        if _probe(proc.port, path):
            return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f"{proc.name} not ready after {timeout:g} s; see {proc.log}")


def _probe(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def stop(proc: Proc, grace: float = 5.0) -> None:
    _terminate(proc.popen, grace)


def _terminate(popen: subprocess.Popen[bytes], grace: float) -> None:
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(grace)
    if popen in _live:
        _live.remove(popen)


def cleanup() -> None:
    for popen in list(_live):
        _terminate(popen, 2.0)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    cleanup()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


# ---------------------------------------------------------------- /proc measurements

def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn --workers: the supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Summed VmRSS of the process tree, MB."""
    return sum(_status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def hwm_mb(pid: int) -> float:
    """Summed VmHWM (peak RSS) of the process tree, MB."""
    return sum(_status_kb(p, "VmHWM") for p in tree(pid)) / 1024


def cpu_seconds(pid: int) -> dict[int, float]:
    """User+system CPU seconds of each process in the tree."""
    out: dict[int, float] = {}
    for p in tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            out[p] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {p: after[p] - before.get(p, 0.0) for p in after}


def syscalls(pid: int) -> tuple[int, int]:
    """(read-like, write-like) system calls made so far by the tree (/proc/<pid>/io)."""
    reads = writes = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "syscr":
                    reads += int(value)
                elif key == "syscw":
                    writes += int(value)
    return reads, writes


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK
