"""Message Batches with real `openrouter-anthropic serve` processes (SQLite store): kill -9
mid-batch and restart, a clean restart, the local executor staying free of Prefect, start-up
time with pending work, and 10,000 requests in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batches_fake import ScriptedFake, params, running_scripted_fake
from batches_procs import (
    CLI,
    CLIENT_KEY,
    ServerProc,
    clean_env,
    free_port,
    peak_rss_mb,
    rss_mb,
    wait_until,
)
from batches_scenarios import answered, kill_and_restart


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedFake]:
    with running_scripted_fake() as fake:
        yield fake


@pytest.fixture
def sfake(upstream: ScriptedFake) -> ScriptedFake:
    upstream.reset()
    return upstream


def test_kill_9_mid_batch_then_restart_sqlite(tmp_path: Path, sfake: ScriptedFake) -> None:
    figures = kill_and_restart(tmp_path, sfake, f"sqlite:///{tmp_path}/batches.db")
    print("crash (SQLite):", figures)


def test_clean_stop_hands_claims_back(tmp_path: Path, sfake: ScriptedFake) -> None:
    """SIGTERM mid-batch: claims go back to the queue, so the restart does not wait for
    leases to run out (lease: 60 s here)."""
    database = f"sqlite:///{tmp_path}/batches.db"
    batches = {"database_url": database, "concurrency": 4, "lease": "60s",
               "poll_interval": 0.2}
    first = ServerProc(tmp_path, sfake.base_url, batches, name="serve-1").start()
    client = first.client()
    batch = client.messages.batches.create(requests=[
        {"custom_id": f"g{i}", "params": params(f"g{i}", "[slow=0.3]")} for i in range(16)])
    wait_until(lambda: client.messages.batches.retrieve(batch.id).request_counts.succeeded >= 4,
               20, "some results")
    first.stop()
    done_before = answered(database, batch.id)
    second = ServerProc(tmp_path, sfake.base_url, batches, name="serve-2").start()
    try:
        client = second.client()
        started = time.monotonic()
        wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 20, "the batch to end")
        assert time.monotonic() - started < 10  # far less than the 60 s lease
        counts = client.messages.batches.retrieve(batch.id).request_counts
        assert counts.succeeded == 16
    finally:
        second.stop()
    assert all(sfake.count(i) == 1 for i in done_before)


_NO_PREFECT_PROBE = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import httpx2
    sys.path.insert(0, {tests!r})
    from batches_procs import children, listening_ports
    from openrouter_anthropic import cli

    url = "http://127.0.0.1:{port}"
    headers = {{"x-api-key": {key!r}}}

    def probe():
        try:
            while True:
                try:
                    httpx2.get(url + "/health", timeout=1)
                    break
                except httpx2.TransportError:
                    time.sleep(0.05)
            body = {{"requests": [{{"custom_id": "p", "params": {params!r}}}]}}
            batch = httpx2.post(url + "/v1/messages/batches", json=body, headers=headers).json()
            while batch["processing_status"] != "ended":
                time.sleep(0.05)
                batch = httpx2.get(url + "/v1/messages/batches/" + batch["id"],
                                   headers=headers).json()
            report = {{
                "counts": batch["request_counts"],
                "prefect_imported": sorted(m for m in sys.modules if m.split(".")[0] ==
                                           "prefect"),
                "asyncpg_imported": "asyncpg" in sys.modules,
                "children": children(os.getpid()),
                "ports": sorted(listening_ports(os.getpid())),
                "prefect_env": sorted(k for k in os.environ if k.startswith("PREFECT_API")),
            }}
        except Exception as exc:
            report = {{"error": repr(exc)}}
        with open({out!r}, "w") as f:
            json.dump(report, f)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=probe, daemon=True).start()
    sys.exit(cli.main(["serve", "--config", {config!r}, "--port", "{port}"]))
""")


def test_local_executor_runs_without_prefect(tmp_path: Path, sfake: ScriptedFake) -> None:
    """No PREFECT_API_URL, no Prefect import, no process, no port but the server's own."""
    server = ServerProc(tmp_path, sfake.base_url,
                        {"database_url": f"sqlite:///{tmp_path}/batches.db"})
    port, out = free_port(), tmp_path / "probe.json"
    script = _NO_PREFECT_PROBE.format(tests=str(Path(__file__).parent), port=port,
                                      key=CLIENT_KEY, params=params("p"), out=str(out),
                                      config=str(server.config_path))
    result = subprocess.run([sys.executable, "-c", script], env=clean_env(), timeout=60,
                            capture_output=True, text=True, check=False)
    assert out.exists(), result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report.get("counts", {}).get("succeeded") == 1, (report, result.stderr[-3000:])
    assert report["prefect_imported"] == []
    assert report["asyncpg_imported"] is False
    assert report["children"] == []
    assert report["ports"] == [port]
    assert report["prefect_env"] == []


def test_ready_within_2_s_with_pending_work(tmp_path: Path, sfake: ScriptedFake) -> None:
    """A store holding an unfinished batch: the server resumes it after it is ready."""
    database = f"sqlite:///{tmp_path}/batches.db"
    batches = {"database_url": database, "concurrency": 2, "poll_interval": 0.2}
    first = ServerProc(tmp_path, sfake.base_url, batches, name="serve-1").start()
    client = first.client()
    batch = client.messages.batches.create(requests=[
        {"custom_id": f"w{i}", "params": params(f"w{i}", "[slow=0.2]")} for i in range(20)])
    wait_until(lambda: client.messages.batches.retrieve(batch.id).request_counts.succeeded >= 2,
               20, "some results")
    first.stop()
    second = ServerProc(tmp_path, sfake.base_url, batches, name="serve-2")
    started = time.monotonic()
    second.start()
    ready_in = time.monotonic() - started
    try:
        print(f"start-to-ready with a pending batch: {ready_in:.2f} s")
        assert ready_in < 2.0
        client = second.client()
        wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 30, "the resumed batch to end")
    finally:
        second.stop()


def test_ten_thousand_requests_in_bounded_memory(tmp_path: Path, sfake: ScriptedFake) -> None:
    n = 10_000
    server = ServerProc(tmp_path, sfake.base_url,
                        {"database_url": f"sqlite:///{tmp_path}/batches.db",
                         "poll_interval": 0.5}).start()
    try:
        client = server.client(timeout=120.0)
        idle_mb = rss_mb(server.pid)
        requests = [{"custom_id": f"r{i}", "params": params(f"r{i}")} for i in range(n)]
        started = time.monotonic()
        batch = client.messages.batches.create(requests=requests)
        created_in = time.monotonic() - started
        wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 120, "10,000 requests", 0.2)
        processed_in = time.monotonic() - started
        after_mb = rss_mb(server.pid)
        lines = 0
        for result in client.messages.batches.results(batch.id):
            assert result.result.type == "succeeded"
            lines += 1
        peak_mb = peak_rss_mb(server.pid)
        final_mb = rss_mb(server.pid)
    finally:
        server.stop()
    calls = sfake.snapshot()
    figures = {"requests": n, "create_s": round(created_in, 2),
               "wall_s": round(processed_in, 2), "per_s": round(n / processed_in),
               "idle_rss_mb": round(idle_mb), "rss_after_batch_mb": round(after_mb),
               "rss_after_results_mb": round(final_mb), "peak_rss_mb": round(peak_mb),
               "upstream_calls_per_request": sum(calls.values()) / n}
    print("10,000-request batch:", figures)
    assert lines == n
    assert sum(calls.values()) == n and max(calls.values()) == 1
    # Bounded: the batch (~1.3 MB of params, ~5 MB of results) never makes the server
    # hold it several times over, and streaming the results adds next to nothing.
    assert peak_mb < idle_mb + 60, figures
    assert final_mb - after_mb < 15, figures


def test_prefect_executor_and_worker_need_an_api_url(tmp_path: Path) -> None:
    server = ServerProc(tmp_path, "http://127.0.0.1:9/api/v1",
                        {"executor": "prefect", "database_url": f"sqlite:///{tmp_path}/b.db"})
    for args in (["serve", "--config", str(server.config_path)],
                 ["worker", "--config", str(server.config_path)]):
        result = subprocess.run([*CLI, *args], env=clean_env(), capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 2, result.stderr
        assert "PREFECT_API_URL" in result.stderr
