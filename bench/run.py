"""The benchmark, in one command, from the repository root:

    python -m bench.run [--duration 5] [--connections 1,16] [--workers 1] [--json PATH|-]

Starts a lean fake OpenRouter (bench/fake.py), the gateway (`openrouter-anthropic serve`),
a minimal aiohttp forwarder (bench/forwarder.py, the Python floor) and, if installed, the
LiteLLM proxy, all on 127.0.0.1; drives them with wrk (or a Python fallback) and a
raw-socket client; prints a table (gateway vs. the fake called directly and vs. the
forwarder, with ratios) and writes JSON to bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import client, conversation, load, procs, profile, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODEL = "claude-sonnet-4-5"
UPSTREAM_MODEL = "anthropic/claude-sonnet-4"
JSON = dict[str, Any]


@dataclass
class Target:
    """Something that answers chat requests: the gateway, the fake directly, the forwarder,
    LiteLLM."""

    name: str
    port: int
    path: str
    anthropic: bool  # Anthropic Messages format (else OpenRouter chat completions)
    pid: int | None = None  # the process whose CPU time and memory are measured
    headers: dict[str, str] = field(default_factory=dict)
    # The fake's pacing for this target's requests unless a phase sets its own.
    gap: float = 0.0
    delay: float = 0.0
    # Relays the upstream's bytes (the forwarder): Anthropic request, OpenRouter reply.
    relay: bool = False

    def body(self, stream: bool, chunks: int, gap: float | None = None,
             delay: float | None = None) -> bytes:
        gap = self.gap if gap is None else gap
        delay = self.delay if delay is None else delay
        text = f"Hello, world bench:chunks={chunks};gap={gap:g};delay={delay:g}"
        body: JSON = {"model": MODEL if self.anthropic else UPSTREAM_MODEL, "max_tokens": 256,
                      "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        if not self.anthropic:
            body["usage"] = {"include": True}
        return json.dumps(body, separators=(",", ":")).encode()

    def raw(self, stream: bool, chunks: int, close: bool = False,
            **knobs: float | None) -> bytes:
        return client.http_request(self.port, self.path, self.body(stream, chunks, **knobs),
                                   self.headers, close)

    @property
    def anthropic_reply(self) -> bool:
        return self.anthropic and not self.relay

    @property
    def first_token(self) -> bytes:
        return b'"text_delta"' if self.anthropic_reply else b'"content":"Echo'

    @property
    def stream_end(self) -> bytes:
        return b"message_stop" if self.anthropic_reply else b"[DONE]"


# ---------------------------------------------------------------- processes

def _clean_env() -> dict[str, str]:
    """The caller's environment without gateway settings, so defaults apply."""
    from dataclasses import fields as dc_fields

    from openrouter_anthropic.settings import Settings

    names = {f.name.upper() for f in dc_fields(Settings)}
    env = {k: v for k, v in os.environ.items()
           if k not in names and not k.startswith(("OPENROUTER", "MODEL_ALIASES"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _gateway_argv(port: int, workers: int) -> list[str]:
    exe = Path(sys.executable).with_name("openrouter-anthropic")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "openrouter_anthropic"]
    argv = [*head, "serve", "--port", str(port)]
    return argv + (["--workers", str(workers)] if workers > 1 else [])


def start_fake(args: argparse.Namespace, log_dir: Path) -> procs.Proc:
    port = procs.free_port()
    argv = [sys.executable, "-m", "bench.fake", "--port", str(port),
            "--chunks", str(args.chunks), "--chunk-gap", str(args.chunk_gap),
            "--first-byte-delay", str(args.first_byte_delay)]
    proc = procs.spawn("fake", argv, _clean_env(), log_dir, port)
    procs.wait_ready(proc, "/health")
    return proc


def start_gateway(upstream_port: int, workers: int, log_dir: Path,
                  name: str = "gateway") -> tuple[procs.Proc, float]:
    port = procs.free_port()
    env = _clean_env() | {"OPENROUTER_BASE_URL": f"http://127.0.0.1:{upstream_port}/api/v1",
                          "OPENROUTER_API_KEY": "x", "FETCH_MODEL_LIST": "false"}
    proc = procs.spawn(name, _gateway_argv(port, workers), env, log_dir, port)
    ready = procs.wait_ready(proc, "/health")
    return proc, ready


def start_forwarder(upstream_port: int, log_dir: Path,
                    name: str = "forwarder") -> tuple[procs.Proc, float]:
    port = procs.free_port()
    argv = [sys.executable, "-m", "bench.forwarder", "--port", str(port),
            "--upstream", f"http://127.0.0.1:{upstream_port}/api/v1"]
    proc = procs.spawn(name, argv, _clean_env(), log_dir, port)
    ready = procs.wait_ready(proc, "/health")
    return proc, ready


def litellm_available() -> bool:
    if shutil.which("litellm") is None:
        return False
    try:
        metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return False
    return True


def start_litellm(upstream_port: int, log_dir: Path) -> tuple[procs.Proc, float]:
    """LiteLLM proxy with one model routed to the fake (optional; never installed by us)."""
    port = procs.free_port()
    config = log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openrouter/{UPSTREAM_MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/api/v1\n"
        "      api_key: x\n"
        "litellm_settings:\n  telemetry: false\n")
    env = _clean_env() | {"LITELLM_LOG": "ERROR"}
    argv = [str(shutil.which("litellm")), "--config", str(config), "--port", str(port),
            "--host", "127.0.0.1"]
    proc = procs.spawn("litellm", argv, env, log_dir, port)
    ready = procs.wait_ready(proc, "/health/liveliness", timeout=120)
    return proc, ready


# ---------------------------------------------------------------- phases

def check_target(target: Target) -> None:
    """One plain and one streamed call must succeed before any load is measured."""
    conn = client.BlockingClient(target.port)
    try:
        plain, body = conn.call(target.raw(False, 10), keep_body=True)
        if plain.status != 200 or b"Echo: tok1" not in body:
            raise RuntimeError(f"{target.name}: bad answer {plain.status}: {body[:300]!r}")
        streamed, body = conn.call(target.raw(True, 10), keep_body=True)
        if streamed.status != 200 or target.stream_end not in body:
            raise RuntimeError(f"{target.name}: bad stream {streamed.status}: {body[:300]!r}")
    finally:
        conn.close()


def latency_1conn(target: Target, count: int, seconds: float) -> JSON:
    """Sequential requests on one connection: full time (plain, streamed) and TTFT."""
    out: JSON = {}
    for stream in (False, True):
        raw = target.raw(stream, 10)
        client.sequential(target.port, raw, min(50, count), seconds)  # warm-up
        samples = client.sequential(target.port, raw, count, seconds,
                                    target.first_token if stream else None)
        kind = "stream" if stream else "plain"
        totals = [s.total * 1000 for s in samples]
        out[f"{kind}_n"] = len(samples)
        out[f"{kind}_non200"] = sum(1 for s in samples if s.status != 200)
        out[f"{kind}_p50_ms"] = client.percentile(totals, 50)
        out[f"{kind}_p99_ms"] = client.percentile(totals, 99)
        if stream:
            firsts = [s.first * 1000 for s in samples if s.first is not None]
            out["ttft_p50_ms"] = client.percentile(firsts, 50)
            out["ttft_p99_ms"] = client.percentile(firsts, 99)
            out["ttft_missing"] = len(samples) - len(firsts)
    return out


def _cpu_pids(targets: list[Target], fake: procs.Proc) -> dict[str, int]:
    pids = {t.name: t.pid for t in targets if t.pid is not None}
    return {**pids, "fake": fake.pid}


def loaded(target: Target, fake: procs.Proc, stream: bool, connections: int, seconds: float,
           chunks: int, gap: float | None = None, use_wrk: bool = True,
           warmup: float = 1.0) -> JSON:
    """A closed-loop run; also the CPU seconds the target and the fake spent per request."""
    body = target.body(stream, chunks, gap=gap)
    if warmup > 0:
        load.run(target.port, target.path, body, target.headers, connections, warmup, use_wrk)
    watched = {"fake": fake.pid} | ({target.name: target.pid} if target.pid else {})
    before = {name: procs.cpu_seconds(pid) for name, pid in watched.items()}
    busy_before = procs.system_busy_seconds()
    fake_before = fake_stats(fake)
    io_before = procs.syscalls(target.pid) if target.pid else (0, 0)
    stats = load.run(target.port, target.path, body, target.headers, connections, seconds,
                     use_wrk)
    busy = procs.system_busy_seconds() - busy_before
    fake_after = fake_stats(fake)
    out: JSON = stats.as_dict()
    requests = max(stats.requests, 1)
    # A pooling client reuses its upstream connections: far below 1 per reply.
    # (-1: the stats call itself.) Also counts the load generator's own connections
    # when the target is the fake, and upstream connections the gateway dropped because
    # the previous run's generator hung up mid-request.
    opened = fake_after["connections"] - fake_before["connections"] - 1
    out["upstream_connections_per_reply"] = opened / requests
    if target.pid is not None:
        out["server_rss_mb_after"] = procs.rss_mb(target.pid)
        io_after = procs.syscalls(target.pid)
        out["server_reads_per_reply"] = (io_after[0] - io_before[0]) / requests
        out["server_writes_per_reply"] = (io_after[1] - io_before[1]) / requests
    ours = stats.generator_cpu_s
    for name, pid in watched.items():
        per_proc = procs.cpu_delta(before[name], procs.cpu_seconds(pid))
        key = "fake" if name == "fake" else "server"
        ours += sum(per_proc.values())
        out[f"{key}_cpu_s"] = sum(per_proc.values())
        out[f"{key}_cpu_us_per_req"] = sum(per_proc.values()) / requests * 1e6
        if key == "server" and len(per_proc) > 1:
            out["server_cpu_by_process"] = sorted(per_proc.values(), reverse=True)
    out["generator_cpu_us_per_req"] = stats.generator_cpu_s / requests * 1e6
    # Cores kept busy by processes outside the benchmark during the run (0 on a quiet box).
    out["other_load_cores"] = max(0.0, busy - ours) / stats.seconds
    return out


def fake_stats(fake: procs.Proc) -> dict[str, int]:
    conn = client.BlockingClient(fake.port)
    try:
        raw = f"GET /_bench/stats HTTP/1.1\r\nHost: 127.0.0.1:{fake.port}\r\n\r\n".encode()
        _, body = conn.call(raw, keep_body=True)
    finally:
        conn.close()
    data: dict[str, int] = json.loads(body)
    return data


def memory_under_streams(target: Target, count: int, chunks: int, gap: float) -> JSON:
    """`count` concurrent streams (each about chunks*gap s long); peak RSS of the target."""
    assert target.pid is not None
    pid = target.pid
    peak = [procs.rss_mb(pid)]

    def sample() -> None:
        peak.append(procs.rss_mb(pid))

    raw = target.raw(True, chunks, close=True, gap=gap)
    timeout = chunks * gap + 30
    ok = asyncio.run(client.concurrent_streams(target.port, raw, count, target.stream_end,
                                               timeout, sample))
    return {"streams": count, "completed_ok": ok, "peak_rss_mb": max(peak),
            "hwm_mb": procs.hwm_mb(pid), "stream_seconds": chunks * gap}


def settle_rss(pid: int, wait: float = 1.0) -> float:
    time.sleep(wait)
    return procs.rss_mb(pid)


def startup_times(start: Callable[[str], tuple[procs.Proc, float]], name: str,
                  runs: int) -> list[float]:
    """Seconds from spawn to ready of `runs` cold starts (each stopped right after)."""
    times = []
    for i in range(runs):
        proc, ready = start(f"{name}-start{i}")
        times.append(ready)
        procs.stop(proc)
    return times


def log_problems(log: Path) -> JSON:
    """Warnings, errors and tracebacks the gateway logged during the run."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    bad = [ln for ln in lines if '"level":"error"' in ln or '"level":"warning"' in ln
           or "Traceback" in ln or ln.startswith(("ERROR", "WARNING"))]
    return {"count": len(bad), "first": bad[:5]}


# ---------------------------------------------------------------- the run

def machine() -> JSON:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    versions = {}
    for pkg in ("openrouter-anthropic-server", "uvicorn", "uvloop", "httptools", "aiohttp",
                "orjson", "litellm"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout \
        if load.have_wrk() else ""
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "source": _git_state(),
            "memory_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "wrk": wrk.split("[")[0].strip() or None, "packages": versions}


def _git_state() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return f"{head}{' + uncommitted src changes' if dirty else ''}"


def run_target_loads(targets: list[Target], fake: procs.Proc, args: argparse.Namespace,
                     use_wrk: bool) -> JSON:
    loads: JSON = {}
    for stream in (False, True):
        for conns in args.connections:
            key = f"{'stream' if stream else 'plain'}_c{conns}"
            loads[key] = {t.name: loaded(t, fake, stream, conns, args.duration, args.chunks,
                                         use_wrk=use_wrk) for t in targets}
            _progress(key, loads[key])
    c = max(args.connections)
    loads[f"stream200_c{c}"] = {t.name: loaded(t, fake, True, c, args.duration, 200,
                                               use_wrk=use_wrk) for t in targets}
    _progress(f"stream200_c{c}", loads[f"stream200_c{c}"])
    loads[f"stream200_paced_c{c}"] = {
        t.name: loaded(t, fake, True, c, args.duration, 200, gap=args.paced_gap,
                       use_wrk=use_wrk, warmup=0) for t in targets}
    _progress(f"stream200_paced_c{c}", loads[f"stream200_paced_c{c}"])
    return loads


def _progress(key: str, row: JSON) -> None:
    parts = [f"{name} {v['rps']:.0f}/s p50 {v['p50_ms']:.2f} ms" for name, v in row.items()]
    print(f"  {key}: " + "; ".join(parts), file=sys.stderr, flush=True)


def workers_check(upstream_port: int, fake: procs.Proc, workers: int, args: argparse.Namespace,
                  log_dir: Path, use_wrk: bool) -> JSON:
    proc, ready = start_gateway(upstream_port, workers, log_dir, f"gateway-w{workers}")
    try:
        target = Target(f"gateway_w{workers}", proc.port, "/v1/messages", True, proc.pid,
                        gap=args.chunk_gap, delay=args.first_byte_delay)
        check_target(target)
        idle = settle_rss(proc.pid, 0.5)
        c = max(args.connections)
        out: JSON = {"workers": workers, "ready_s": ready, "idle_rss_mb": idle}
        for stream in (False, True):
            stats = loaded(target, fake, stream, c, args.duration, args.chunks, use_wrk=use_wrk)
            shares = stats.get("server_cpu_by_process", [])
            busy = [s for s in shares if s > 0.1 * stats["server_cpu_s"]]
            out["stream" if stream else "plain"] = {
                "rps": stats["rps"], "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"],
                "non_2xx": stats["non_2xx"], "errors": stats["errors"],
                "cpu_s_by_process": [round(s, 2) for s in shares],
                "busy_processes": len(busy),
                "cores_used": stats["server_cpu_s"] / stats["seconds"]}
        out["problems"] = log_problems(proc.log)
        return out
    finally:
        procs.stop(proc)


def profile_gateway(gateway: Target, fake: procs.Proc, args: argparse.Namespace,
                    out_dir: Path, use_wrk: bool) -> JSON:
    assert gateway.pid is not None
    results: JSON = {}
    c = max(args.connections)
    for name, stream, chunks in (("plain", False, args.chunks), ("stream", True, args.chunks),
                                 ("stream200", True, 200)):
        path = out_dir / f"profile-{name}.txt"
        spy = profile.start(gateway.pid, args.duration, path, args.profile == "native")
        time.sleep(0.3)
        loaded(gateway, fake, stream, c, args.duration, chunks, use_wrk=use_wrk, warmup=0)
        spy.wait(args.duration + 30)
        if not path.exists():
            err = spy.stderr.read().decode() if spy.stderr else ""
            raise RuntimeError(f"py-spy wrote no profile: {err}")
        results[name] = profile.summarize(path)
    return results


def derived(result: JSON, args: argparse.Namespace) -> None:
    """Figures computed from the raw runs: per-chunk cost, TTFT overhead, added latency."""
    lat = result["latency_1conn"]
    direct = lat["direct"]
    for name, row in lat.items():
        if name == "direct":
            continue
        row["added_plain_p50_ms"] = row["plain_p50_ms"] - direct["plain_p50_ms"]
        row["added_stream_p50_ms"] = row["stream_p50_ms"] - direct["stream_p50_ms"]
        row["ttft_overhead_p50_ms"] = row["ttft_p50_ms"] - direct["ttft_p50_ms"]
    c = max(args.connections)
    loads = result["load"]
    short, long_, paced = (loads[f"stream_c{c}"], loads[f"stream200_c{c}"],
                           loads[f"stream200_paced_c{c}"])
    per_chunk: JSON = {}
    for name in long_:
        if "server_cpu_us_per_req" not in long_[name]:
            continue
        extra = 200 - args.chunks
        per_chunk[name] = {
            "marginal_cpu_us_per_chunk": (long_[name]["server_cpu_us_per_req"]
                                          - short[name]["server_cpu_us_per_req"]) / extra,
            "paced_cpu_us_per_chunk": paced[name]["server_cpu_us_per_req"] / 200,
        }
    result["per_chunk"] = per_chunk


def run(args: argparse.Namespace) -> JSON:
    use_wrk = not args.python_load
    if use_wrk and not load.have_wrk():
        print("wrk not found: install it (apt-get install -y wrk); using the Python load "
              "generator, which may itself be the bottleneck", file=sys.stderr)
        use_wrk = False
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    result: JSON = {"machine": machine(), "config": _config(args, use_wrk)}
    result["machine"]["other_load_at_start_cores"] = _wait_quiet(args.wait_quiet)
    started = time.perf_counter()

    _say("translation core (in process)")
    result["translation"] = {"request_1mb": conversation.request_direction(),
                             "stream_200_chunks": conversation.response_direction()}
    gc.collect()

    fake = start_fake(args, log_dir)
    _say("start-up")
    result["startup"] = {
        "gateway": startup_times(
            lambda name: start_gateway(fake.port, args.workers, log_dir, name), "gateway",
            args.startup_runs),
        "forwarder": startup_times(lambda name: start_forwarder(fake.port, log_dir, name),
                                   "forwarder", args.startup_runs)}
    gw_proc, ready = start_gateway(fake.port, args.workers, log_dir)
    result["startup"]["gateway"].append(ready)
    fw_proc, ready = start_forwarder(fake.port, log_dir)
    result["startup"]["forwarder"].append(ready)
    memory: JSON = {"gateway": {"idle_rss_mb": settle_rss(gw_proc.pid, 0.5)},
                    "forwarder": {"idle_rss_mb": settle_rss(fw_proc.pid, 0.5)}}

    targets = [Target("gateway", gw_proc.port, "/v1/messages", True, gw_proc.pid),
               Target("direct", fake.port, "/api/v1/chat/completions", False, None,
                      {"Authorization": "Bearer x"}),
               Target("forwarder", fw_proc.port, "/v1/messages", True, fw_proc.pid,
                      relay=True)]
    lite = _maybe_litellm(fake.port, log_dir, result, memory, args)
    if lite is not None:
        targets.append(lite)
    for target in targets:
        target.gap, target.delay = args.chunk_gap, args.first_byte_delay
    for target in targets:
        check_target(target)

    _say("latency at 1 connection")
    result["latency_1conn"] = {t.name: latency_1conn(t, args.latency_requests, args.duration)
                               for t in targets}
    _say("load (wrk)" if use_wrk else "load (python generator)")
    result["load"] = run_target_loads(targets, fake, args, use_wrk)

    _say(f"{args.streams} concurrent streams")
    for target in targets:
        if target.pid is None:
            continue
        mem = memory.setdefault(target.name, {})
        mem.update(memory_under_streams(target, args.streams, 50, 0.02))
        mem["idle_after_load_rss_mb"] = settle_rss(target.pid)
    result["memory"] = memory

    if args.workers_check > 1:
        _say(f"serve --workers {args.workers_check}")
        result["workers"] = workers_check(fake.port, fake, args.workers_check, args, log_dir,
                                          use_wrk)
    if args.profile:
        _say("py-spy profiles of the gateway")
        result["profile"] = profile_gateway(targets[0], fake, args, RESULTS, use_wrk)

    result["problems"] = {"gateway_log": log_problems(gw_proc.log),
                          "forwarder_log": log_problems(fw_proc.log)}
    result["elapsed_s"] = time.perf_counter() - started
    derived(result, args)
    result["ratios"] = report.ratios(result)
    procs.cleanup()
    return result


def _maybe_litellm(upstream_port: int, log_dir: Path, result: JSON, memory: JSON,
                   args: argparse.Namespace) -> Target | None:
    if args.no_litellm or not litellm_available():
        result["litellm"] = "not installed" if not args.no_litellm else "skipped"
        return None
    proc, ready = start_litellm(upstream_port, log_dir)
    result["startup"]["litellm"] = [ready]
    memory["litellm"] = {"idle_rss_mb": settle_rss(proc.pid, 1.0)}
    return Target("litellm", proc.port, "/v1/messages", True, proc.pid,
                  {"Authorization": "Bearer x"})


def _other_load(seconds: float) -> float:
    """Cores busy while this process sleeps: load from outside the benchmark."""
    before = procs.system_busy_seconds()
    time.sleep(seconds)
    return (procs.system_busy_seconds() - before) / seconds


def _wait_quiet(limit_s: float, quiet: float = 0.2) -> float:
    """Wait up to `limit_s` for other load to drop below `quiet` cores; the last reading."""
    deadline = time.monotonic() + limit_s
    while True:
        load_now = _other_load(1.0)
        if load_now < quiet or time.monotonic() >= deadline:
            return load_now
        _say(f"other load {load_now:.2f} cores; waiting for a quieter machine")


def _config(args: argparse.Namespace, use_wrk: bool) -> JSON:
    return {"duration_s": args.duration, "connections": args.connections,
            "workers": args.workers, "chunks": args.chunks, "chunk_gap_s": args.chunk_gap,
            "first_byte_delay_s": args.first_byte_delay, "paced_gap_s": args.paced_gap,
            "streams": args.streams, "generator": "wrk" if use_wrk else "python"}


def _say(what: str) -> None:
    print(f"[bench] {what}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=5,
                   help="whole seconds per load run (default 5; the whole run takes about "
                   "20x this plus 30 s)")
    p.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 16], help="comma-separated connection counts (default 1,16)")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    p.add_argument("--workers-check", type=int, default=2,
                   help="also run a gateway with this many workers (0: skip; default 2)")
    p.add_argument("--chunks", type=int, default=10,
                   help="content chunks per streamed reply (default 10)")
    p.add_argument("--chunk-gap", type=float, default=0.0,
                   help="fake upstream: seconds between chunks (default 0)")
    p.add_argument("--first-byte-delay", type=float, default=0.0,
                   help="fake upstream: seconds before the first byte (default 0)")
    p.add_argument("--paced-gap", type=float, default=0.001,
                   help="chunk gap of the paced 200-chunk run (default 0.001)")
    p.add_argument("--streams", type=int, default=200,
                   help="concurrent streams for the memory figure (default 200)")
    p.add_argument("--latency-requests", type=int, default=500,
                   help="sequential requests per latency figure (default 500)")
    p.add_argument("--startup-runs", type=int, default=2,
                   help="extra cold starts timed (default 2)")
    p.add_argument("--profile", nargs="?", const="python", choices=["python", "native"],
                   help="also sample the gateway under load with py-spy (after the "
                   "measurements; 'native' adds C frames and system calls)")
    p.add_argument("--python-load", action="store_true",
                   help="use the Python load generator even if wrk is installed")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even if installed")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to this long for other load to drop (default 0)")
    p.add_argument("--json", metavar="PATH",
                   help="also write the JSON here ('-' prints it to stdout)")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60:
        p.error("--duration must be 1-60 (whole seconds: wrk takes no fractions)")
    if args.chunks >= 200 or args.chunks < 1:
        p.error("--chunks must be in [1, 199] (the per-chunk figure compares with 200)")
    if not 1 <= args.streams <= 1000:
        p.error("--streams must be in [1, 1000]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_cleanup()
    try:
        result = run(args)
    finally:
        procs.cleanup()
    text = json.dumps(result, indent=2)
    latest = RESULTS / "latest.json"
    latest.write_text(text + "\n")
    # With --json -, stdout carries only the JSON; the table goes to stderr.
    print(report.table(result), file=sys.stderr if args.json == "-" else sys.stdout)
    print(f"\nJSON: {latest}", file=sys.stderr)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
