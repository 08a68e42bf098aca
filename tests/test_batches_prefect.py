"""Message Batches on Prefect, nothing mocked: a real `prefect server start` (temporary
PREFECT_HOME, free port, PostgreSQL backend), the gateway with `batches.executor: prefect`
and an `openrouter-anthropic worker`. The batch ends, and the Prefect API shows its flow
run Completed with one task run per chunk and the batch id as its only parameter. Then a
flow-run process is killed mid-batch: Prefect marks the run Crashed, the gateway submits
another, and the batch still ends with every result.

PostgreSQL backs the Prefect server: under concurrent submissions its SQLite backend was
measured to fail with "database is locked" (see issue 8).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batches_fake import ScriptedFake, params, running_scripted_fake
from batches_pg import shared_cluster
from batches_procs import CLI, PrefectServer, Proc, ServerProc, wait_until
from batches_scenarios import answered, attempts, query


@pytest.fixture
def sfake() -> Iterator[ScriptedFake]:
    with running_scripted_fake() as fake:
        yield fake


def test_batch_runs_as_a_prefect_flow_run_on_a_worker(tmp_path: Path,
                                                     sfake: ScriptedFake) -> None:
    cluster = shared_cluster()
    store = cluster.create_database("store")
    prefect = PrefectServer(tmp_path, cluster.create_database("prefect")).start()
    procs: list[Proc] = [prefect]
    try:
        batches = {"database_url": store, "executor": "prefect", "poll_interval": 0.2,
                   "chunk_size": 3, "concurrency": 2, "lease": "2s"}
        gateway = ServerProc(tmp_path, sfake.base_url, batches, env=prefect.client_env())
        procs.append(gateway.start())
        worker = Proc("worker", [*CLI, "worker", "--config", str(gateway.config_path),
                                 "--limit", "2"],
                      prefect.client_env(PREFECT_WORKER_QUERY_SECONDS="1"), tmp_path)
        procs.append(worker)
        worker.spawn()

        client = gateway.client()
        ids = [f"p{i}" for i in range(7)]
        invalid = {**params("p-bad"), "max_tokens": 0}
        batch = client.messages.batches.create(
            requests=[{"custom_id": i, "params": params(i)} for i in ids]
            + [{"custom_id": "p-bad", "params": invalid}])
        wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 180, f"the batch to end:\n{worker.log()[-4000:]}", 0.5)
        results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
        assert results == {**dict.fromkeys(ids, "succeeded"), "p-bad": "errored"}
        assert all(sfake.count(i) == 1 for i in ids) and sfake.count("p-bad") == 0

        (row,) = query(store, "SELECT flow_run_id FROM batches WHERE id = $1", batch.id)
        flow_run_id = str(row[0])

        def flow_run() -> dict[str, Any]:
            run: dict[str, Any] = prefect.api("GET", f"/flow_runs/{flow_run_id}")
            return run

        wait_until(lambda: flow_run()["state_type"] == "COMPLETED", 60,
                   f"the flow run to complete:\n{worker.log()[-4000:]}", 0.5)
        run = flow_run()
        assert run["parameters"] == {"batch_id": batch.id}  # ids only
        assert run["name"] == batch.id
        deployment = prefect.api("GET", f"/deployments/{run['deployment_id']}")
        assert deployment["work_pool_name"] == "openrouter-anthropic-batches"
        assert deployment["entrypoint"].endswith("prefect_flows:process_batch_flow")

        def task_runs() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = prefect.api("POST", "/task_runs/filter", json={
                "flow_runs": {"id": {"any_": [flow_run_id]}}})
            return found

        wait_until(lambda: len(task_runs()) == 3
                   and all(t["state_type"] == "COMPLETED" for t in task_runs()),
                   60, "three Completed chunk task runs", 0.5)
        # The requests ran in the worker's flow-run process, not in the gateway.
        workers = {worker_id.split(":")[1] for _, _, worker_id, _ in attempts(store, batch.id)}
        assert len(workers) == 1 and str(gateway.pid) not in workers

        # kill -9 the flow-run process mid-batch: the run is Crashed, the gateway submits
        # another, and the batch ends with nothing answered before the kill sent twice.
        slow = [f"k{i}" for i in range(30)]
        second = client.messages.batches.create(
            requests=[{"custom_id": i, "params": params(i, "[slow=0.1]")} for i in slow])
        wait_until(lambda: client.messages.batches.retrieve(second.id).request_counts.succeeded
                   >= 4, 120, f"the second batch to start:\n{worker.log()[-4000:]}", 0.2)
        done_before = answered(store, second.id)
        (victim,) = {int(w.split(":")[1]) for _, _, w, _ in attempts(store, second.id)}
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: client.messages.batches.retrieve(second.id).processing_status
                   == "ended", 180, f"the second batch to end:\n{worker.log()[-4000:]}", 0.5)
        results = {r.custom_id: r.result.type
                   for r in client.messages.batches.results(second.id)}
        assert results == dict.fromkeys(slow, "succeeded")
        assert all(sfake.count(i) == 1 for i in done_before)
        runs = prefect.api("POST", "/flow_runs/filter", json={
            "flow_runs": {"name": {"any_": [second.id]}}})
        states = sorted(r["state_type"] for r in runs)
        assert "COMPLETED" in states and len(runs) >= 2, states
        print("flow runs of the killed batch:", states)
    finally:
        for proc in reversed(procs):
            proc.stop()
