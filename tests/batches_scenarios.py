"""Scenarios shared by the SQLite and PostgreSQL batch tests (crash and restart), and direct
reads of a batch store, to see what it held at a given moment."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from batches_fake import ScriptedFake, params
from batches_procs import ServerProc, wait_until
from openrouter_anthropic.batches.db import Row, Tx, open_database

FINAL = ("succeeded", "errored", "canceled", "expired")


def query(database_url: str, sql: str, *args: Any) -> list[Row]:
    async def run() -> list[Row]:
        db = await open_database(database_url, 1)
        try:
            async def read(tx: Tx) -> list[Row]:
                return await tx.fetch(sql, *args)

            return await db.read(read)
        finally:
            await db.close()

    return asyncio.run(run())


def answered(database_url: str, batch_id: str) -> set[str]:
    """custom_ids whose outcome is stored (committed) right now."""
    rows = query(database_url, "SELECT custom_id FROM batch_requests WHERE batch_id = $1 "
                 f"AND state IN {FINAL}", batch_id)
    return {str(r[0]) for r in rows}


def attempts(database_url: str, batch_id: str) -> list[tuple[str, int, str, str | None]]:
    """(custom_id, n, worker, outcome) of every recorded attempt."""
    rows = query(database_url, "SELECT r.custom_id, a.n, a.worker, a.outcome "
                 "FROM batch_attempts a JOIN batch_requests r "
                 "ON r.batch_id = a.batch_id AND r.idx = a.idx WHERE a.batch_id = $1",
                 batch_id)
    return [(str(r[0]), int(r[1]), str(r[2]), r[3]) for r in rows]


def kill_and_restart(workdir: Path, fake: ScriptedFake, database_url: str,
                     requests: int = 120, concurrency: int = 8) -> dict[str, Any]:
    """kill -9 a server mid-batch, start another on the same store, and check that every
    result is there and nothing answered before the kill went upstream twice."""
    # A lease long enough that a busy machine's late heartbeat does not expire it, short
    # enough that recovery after the kill stays quick.
    batches = {"database_url": database_url, "concurrency": concurrency, "chunk_size": 10,
               "lease": "3s", "poll_interval": 0.2}
    first = ServerProc(workdir, fake.base_url, batches, name="serve-1").start()
    client = first.client()
    ids = [f"c{i}" for i in range(requests)]
    batch = client.messages.batches.create(
        requests=[{"custom_id": i, "params": params(i, "[slow=0.05]")} for i in ids])
    wait_until(lambda: client.messages.batches.retrieve(batch.id).request_counts.succeeded
               >= requests // 4, 30, "a quarter of the batch")
    done_before = answered(database_url, batch.id)
    first.kill9()
    killed_at = time.monotonic()
    sent_before = fake.snapshot()
    assert 0 < len(done_before) < requests, "the kill must land mid-batch"

    second = ServerProc(workdir, fake.base_url, batches, name="serve-2").start()
    try:
        client = second.client()
        wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status
                   == "ended", 60, "the batch to end after the restart", 0.1)
        recovered_in = time.monotonic() - killed_at
        results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    finally:
        second.stop()
    calls = fake.snapshot()
    assert results == dict.fromkeys(ids, "succeeded"), "every result is present"
    twice = {i for i in ids if calls[i] > 1}
    assert not twice & done_before, f"answered before the kill, sent again: {twice}"
    assert all(calls[i] <= 2 for i in ids)
    # Only attempts in flight at the kill were sent again, and each was recorded first.
    in_flight = {i for i in ids if sent_before[i] and i not in done_before}
    assert twice <= in_flight
    recorded = attempts(database_url, batch.id)
    abandoned = {cid for cid, _, _, outcome in recorded if outcome == "abandoned"}
    assert twice <= abandoned
    per_id = Counter(cid for cid, *_ in recorded)
    assert all(calls[i] <= per_id[i] for i in ids), "every upstream call had an attempt row"
    assert len(abandoned) <= concurrency
    return {"answered_before_kill": len(done_before), "resent": len(twice),
            "recovered_in_s": round(recovered_in, 2), "upstream_calls": sum(calls.values())}
