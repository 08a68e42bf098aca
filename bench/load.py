"""Closed-loop load: wrk with a Lua script (POST body, JSON summary), or the Python fallback.

wrk times whole responses, so for a streamed reply its latency is the time to the last
byte and its rate is replies/s.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import client

_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local f = assert(io.open("%(body_path)s", "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"bytes":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
"""


@dataclass
class LoadStats:
    generator: str
    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int
    generator_cpu_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(port: int, path: str, body: bytes, headers: dict[str, str], connections: int,
        seconds: float, use_wrk: bool = True) -> LoadStats:
    if use_wrk and have_wrk():
        return _wrk(port, path, body, headers, connections, seconds)
    return _python(port, path, body, headers, connections, seconds)


def _lua_headers(headers: dict[str, str]) -> str:
    return "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                     for k, v in headers.items())


def _wrk(port: int, path: str, body: bytes, headers: dict[str, str], connections: int,
         seconds: float) -> LoadStats:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA % {"headers": _lua_headers(headers), "body_path": body_path})
        whole = max(1, round(seconds))  # wrk takes whole seconds only
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{whole}s", "--timeout", "10s",
                "-s", str(script), f"http://127.0.0.1:{port}{path}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    return LoadStats("wrk", connections, duration, data["requests"],
                     data["requests"] / duration, data["p50_us"] / 1000,
                     data["p99_us"] / 1000, errors, data["status"], cpu)


def _python(port: int, path: str, body: bytes, headers: dict[str, str], connections: int,
            seconds: float) -> LoadStats:
    raw = client.http_request(port, path, body, headers)
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = _run_loop(client.python_load(port, raw, connections, seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lat = result.latencies
    return LoadStats("python (may itself be the bottleneck)", connections, seconds,
                     result.requests, result.requests / seconds,
                     client.percentile(lat, 50) * 1000, client.percentile(lat, 99) * 1000,
                     result.errors, result.non_200, cpu)


def _run_loop(coro: Coroutine[Any, Any, client.LoadResult]) -> client.LoadResult:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    result: client.LoadResult = uvloop.run(coro)
    return result
