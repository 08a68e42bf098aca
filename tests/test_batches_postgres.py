"""Message Batches on a shared PostgreSQL store, with real server processes: kill -9
mid-batch and restart, and two instances sharing one batch without running a request twice.

The cluster is this session's own (tests/batches_pg.py: initdb + pg_ctl on a free port);
missing PostgreSQL binaries fail these tests, they are never skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batches_fake import ScriptedFake, params, running_scripted_fake
from batches_pg import shared_cluster
from batches_procs import ServerProc, wait_until
from batches_scenarios import attempts, kill_and_restart


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedFake]:
    with running_scripted_fake() as fake:
        yield fake


@pytest.fixture
def sfake(upstream: ScriptedFake) -> ScriptedFake:
    upstream.reset()
    return upstream


def test_kill_9_mid_batch_then_restart_postgres(tmp_path: Path, sfake: ScriptedFake) -> None:
    figures = kill_and_restart(tmp_path, sfake, shared_cluster().create_database("crash"))
    print("crash (PostgreSQL):", figures)


def test_two_instances_share_one_batch(tmp_path: Path, sfake: ScriptedFake) -> None:
    database = shared_cluster().create_database("shared")
    batches = {"database_url": database, "concurrency": 4, "chunk_size": 20,
               "poll_interval": 0.1, "lease": "5s"}
    first = ServerProc(tmp_path, sfake.base_url, batches, name="serve-a").start()
    second = ServerProc(tmp_path, sfake.base_url, batches, name="serve-b").start()
    pids = {str(first.pid), str(second.pid)}
    try:
        n = 240
        ids = [f"s{i}" for i in range(n)]
        client = first.client()
        batch = client.messages.batches.create(
            requests=[{"custom_id": i, "params": params(i, "[slow=0.03]")} for i in ids])
        other = second.client()  # the same key sees the same batch on either instance
        wait_until(lambda: other.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 60, "the shared batch to end", 0.1)
        results = {r.custom_id: r.result.type for r in other.messages.batches.results(batch.id)}
    finally:
        first.stop()
        second.stop()
    assert results == dict.fromkeys(ids, "succeeded")
    calls = sfake.snapshot()
    assert all(calls[i] == 1 for i in ids), "a request ran twice"
    recorded = attempts(database, batch.id)
    assert len(recorded) == n and all(outcome == "ok" for *_, outcome in recorded)
    by_worker = Counter(worker.split(":")[1] for _, _, worker, _ in recorded)
    assert set(by_worker) == pids, by_worker
    print("requests per instance:", dict(by_worker))
