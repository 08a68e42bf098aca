"""The batch store: every state change of batches and requests, each in one transaction.

Request states: queued -> running (claimed: leased, attempt recorded) -> succeeded |
errored | canceled | expired, or back to queued (a retry, after `not_before`). Whatever moves
a request to a final state moves the batch's counts in the same transaction, and the one
that brings `processing` to 0 ends the batch.

A claim is the crash-safety point: the attempt is committed before the upstream call, its
outcome as soon as the call returns. After a crash, a request is `running` under a lease
that nobody renews; once the lease runs out it is claimed again (the in-flight attempt is
re-sent). A request with a stored outcome is never claimed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .db import Database, Row, Tx
from .envelope import NewRequest
from .wire import BatchRow, errored_result

_BATCH_COLUMNS = ("id, owner, status, request_count, processing, succeeded, errored, canceled, "
                  "expired, created_at, expires_at, ended_at, cancel_initiated_at, archived_at, "
                  "flow_run_id")
_FINAL_COUNTERS = frozenset({"succeeded", "errored", "canceled", "expired"})
_INSERT_SLICE = 5000
# Claimable: queued and due, or running under a lease that ran out (its worker is gone).
_CLAIMABLE = ("((state = 'queued' AND not_before <= $4) OR "
              "(state = 'running' AND lease_until < $4))")


@dataclass(frozen=True, slots=True)
class InvalidParams:
    error_type: str
    message: str


Checked = dict[str, Any] | InvalidParams


@dataclass(frozen=True, slots=True)
class Claim:
    batch_id: str
    idx: int
    custom_id: str
    attempt: int
    body: dict[str, Any]
    owner: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended. `state` queued means: retry after `not_before`."""

    state: str
    note: str
    result: bytes | None = None
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class ChunkOutlook:
    open: bool  # the batch still takes claims (in progress, not expired)
    next_retry_at: float | None  # earliest queued request of the chunk not yet due


def _batch(row: Row) -> BatchRow:
    return BatchRow(*row)


def _count(state: str) -> str:
    """SQL moving `$2` requests of batch `$1` from processing to `state`, at time `$3`."""
    assert state in _FINAL_COUNTERS
    return (f"UPDATE batches SET processing = processing - $2, {state} = {state} + $2, "
            "status = CASE WHEN processing - $2 = 0 THEN 'ended' ELSE status END, "
            "ended_at = CASE WHEN processing - $2 = 0 THEN $3 ELSE ended_at END "
            "WHERE id = $1")


class BatchStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._skip_locked = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------ the API's operations

    async def create(self, batch_id: str, owner: str, requests: Sequence[NewRequest],
                     now: float, expires_at: float) -> BatchRow:
        rows = [(batch_id, i, r.custom_id, r.params) for i, r in enumerate(requests)]

        async def run(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO batches (id, owner, status, request_count, processing, "
                "created_at, expires_at) VALUES ($1, $2, 'in_progress', $3, $3, $4, $5)",
                batch_id, owner, len(rows), now, expires_at)
            for start in range(0, len(rows), _INSERT_SLICE):
                await tx.executemany(
                    "INSERT INTO batch_requests (batch_id, idx, custom_id, params) "
                    "VALUES ($1, $2, $3, $4)", rows[start:start + _INSERT_SLICE])

        await self.db.write(run)
        return BatchRow(batch_id, owner, "in_progress", len(rows), len(rows), 0, 0, 0, 0,
                        now, expires_at, None, None, None)

    async def get(self, batch_id: str, owner: str | None = None) -> BatchRow | None:
        async def run(tx: Tx) -> Row | None:
            return await tx.fetchrow(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = $1",
                                     batch_id)

        row = await self.db.read(run)
        if row is None or (owner is not None and row[1] != owner):
            return None
        return _batch(row)

    async def list_batches(self, owner: str, limit: int, after_id: str | None,
                   before_id: str | None) -> tuple[list[BatchRow], bool]:
        """Newest first; `after_id` pages towards older batches, `before_id` towards newer."""
        base = f"SELECT {_BATCH_COLUMNS} FROM batches WHERE owner = $1"

        async def run(tx: Tx) -> list[Row]:
            if before_id is not None:
                return await tx.fetch(f"{base} AND id > $2 ORDER BY id ASC LIMIT $3", owner,
                                      before_id, limit + 1)
            if after_id is not None:
                return await tx.fetch(f"{base} AND id < $2 ORDER BY id DESC LIMIT $3", owner,
                                      after_id, limit + 1)
            return await tx.fetch(f"{base} ORDER BY id DESC LIMIT $2", owner, limit + 1)

        rows = await self.db.read(run)
        has_more = len(rows) > limit
        page = [_batch(r) for r in rows[:limit]]
        if before_id is not None:
            page.reverse()
        return page, has_more

    async def cancel(self, batch_id: str, owner: str, now: float) -> BatchRow | None:
        """in_progress -> canceling; queued requests (and dead claims) -> canceled."""

        async def run(tx: Tx) -> None:
            changed = await tx.execute(
                "UPDATE batches SET status = 'canceling', cancel_initiated_at = $3 "
                "WHERE id = $1 AND owner = $2 AND status = 'in_progress'", batch_id, owner, now)
            if changed:
                await self._settle(tx, batch_id, "canceled", now)

        await self.db.write(run)
        return await self.get(batch_id, owner)

    async def delete(self, batch_id: str, owner: str) -> str:
        """"deleted", "not_found" or the status that forbids it."""

        async def run(tx: Tx) -> str:
            row = await tx.fetchrow("SELECT status FROM batches WHERE id = $1 AND owner = $2",
                                    batch_id, owner)
            if row is None:
                return "not_found"
            if row[0] != "ended":
                return str(row[0])
            await self._drop_requests(tx, batch_id)
            await tx.execute("DELETE FROM batches WHERE id = $1", batch_id)
            return "deleted"

        return await self.db.write(run)

    async def result_page(self, batch_id: str, after_idx: int,
                          limit: int) -> list[tuple[int, str, str, bytes | None]]:
        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch(
                "SELECT idx, custom_id, state, result FROM batch_requests "
                "WHERE batch_id = $1 AND idx > $2 ORDER BY idx LIMIT $3",
                batch_id, after_idx, limit)

        rows = await self.db.read(run)
        return [(int(r[0]), str(r[1]), str(r[2]), _bytes(r[3])) for r in rows]

    # ------------------------------------------------------------ the workers' operations

    async def open_batch_ids(self) -> list[str]:
        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch("SELECT id FROM batches WHERE status <> 'ended' ORDER BY id")

        return [str(r[0]) for r in await self.db.read(run)]

    async def open_chunks(self, batch_id: str, chunk_size: int, now: float) -> list[int]:
        """Chunks with work this worker could take: a queued request (due or not), or one
        whose lease ran out. Requests another live worker holds are its business."""

        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch(
                "SELECT DISTINCT idx / $2 FROM batch_requests WHERE batch_id = $1 "
                "AND (state = 'queued' OR (state = 'running' AND lease_until < $3)) "
                "ORDER BY 1", batch_id, chunk_size, now)

        return [int(r[0]) for r in await self.db.read(run)]

    async def claim(self, batch_id: str, lo: int, hi: int, worker: str, now: float,
                    lease_until: float, check: Callable[[bytes], Checked]) -> Claim | None:
        """Take the next claimable request of chunk [lo, hi) and record the attempt.

        `check` validates its params: an invalid request ends `errored` here, with no
        attempt. It runs inside the transaction (on SQLite, on the store's thread), so it
        must be quick and touch nothing shared. None: nothing claimable now (or the batch
        no longer takes claims)."""
        select = (f"SELECT idx, custom_id, params, state, attempts FROM batch_requests "
                  f"WHERE batch_id = $1 AND idx >= $2 AND idx < $3 AND {_CLAIMABLE} "
                  f"ORDER BY idx LIMIT 1{self._skip_locked}")

        async def run(tx: Tx) -> Claim | None:
            batch = await tx.fetchrow("SELECT status, expires_at, owner FROM batches "
                                      "WHERE id = $1", batch_id)
            if batch is None or batch[0] != "in_progress" or batch[1] <= now:
                return None
            while True:
                row = await tx.fetchrow(select, batch_id, lo, hi, now)
                if row is None:
                    return None
                idx, custom_id, params, state, attempts = row
                if state == "running":  # its worker died mid-attempt
                    await tx.execute(
                        "UPDATE batch_attempts SET outcome = 'abandoned', ended_at = $4 "
                        "WHERE batch_id = $1 AND idx = $2 AND n = $3 AND outcome IS NULL",
                        batch_id, idx, attempts, now)
                checked = check(_bytes(params) or b"")
                if isinstance(checked, InvalidParams):
                    await self._finalize(tx, batch_id, idx, "errored", _error_result(checked),
                                         now)
                    continue
                await tx.execute(
                    "UPDATE batch_requests SET state = 'running', attempts = attempts + 1, "
                    "lease_owner = $3, lease_until = $4 WHERE batch_id = $1 AND idx = $2",
                    batch_id, idx, worker, lease_until)
                await tx.execute(
                    "INSERT INTO batch_attempts (batch_id, idx, n, worker, started_at) "
                    "VALUES ($1, $2, $3, $4, $5)", batch_id, idx, attempts + 1, worker, now)
                return Claim(batch_id, int(idx), str(custom_id), int(attempts) + 1, checked,
                             str(batch[2]))

        return await self.db.write(run)

    async def finish(self, claim: Claim, worker: str, outcome: Outcome, now: float) -> bool:
        """Store the attempt's outcome; False when the claim was lost (lease taken over,
        or the request settled by a cancel/expiry sweep): then nothing is written."""

        async def run(tx: Tx) -> bool:
            changed = await tx.execute(
                "UPDATE batch_requests SET state = $5, result = $6, not_before = $7, "
                "lease_owner = NULL, lease_until = NULL WHERE batch_id = $1 AND idx = $2 "
                "AND state = 'running' AND lease_owner = $3 AND attempts = $4",
                claim.batch_id, claim.idx, worker, claim.attempt, outcome.state,
                outcome.result, outcome.not_before)
            if not changed:
                return False
            await tx.execute(
                "UPDATE batch_attempts SET outcome = $4, ended_at = $5 "
                "WHERE batch_id = $1 AND idx = $2 AND n = $3",
                claim.batch_id, claim.idx, claim.attempt, outcome.note, now)
            if outcome.state in _FINAL_COUNTERS:
                await tx.execute(_count(outcome.state), claim.batch_id, 1, now)
            return True

        return await self.db.write(run)

    async def chunk_outlook(self, batch_id: str, lo: int, hi: int, now: float) -> ChunkOutlook:
        async def run(tx: Tx) -> tuple[Row | None, Row | None]:
            batch = await tx.fetchrow("SELECT status, expires_at FROM batches WHERE id = $1",
                                      batch_id)
            retry = await tx.fetchrow(
                "SELECT MIN(not_before) FROM batch_requests WHERE batch_id = $1 "
                "AND idx >= $2 AND idx < $3 AND state = 'queued'", batch_id, lo, hi)
            return batch, retry

        batch, retry = await self.db.read(run)
        is_open = batch is not None and batch[0] == "in_progress" and batch[1] > now
        return ChunkOutlook(is_open, _float(retry[0]) if retry is not None else None)

    async def renew_leases(self, worker: str, lease_until: float) -> int:
        async def run(tx: Tx) -> int:
            return await tx.execute(
                "UPDATE batch_requests SET lease_until = $2 "
                "WHERE lease_owner = $1 AND state = 'running'", worker, lease_until)

        return await self.db.write(run)

    async def release_leases(self, worker: str, now: float) -> int:
        """On a clean shutdown: this worker's claims go back to the queue at once (their
        calls were aborted), so a restart does not wait for the leases to run out."""

        async def run(tx: Tx) -> int:
            rows = await tx.fetch(
                "UPDATE batch_requests SET state = 'queued', lease_owner = NULL, "
                "lease_until = NULL WHERE lease_owner = $1 AND state = 'running' "
                "RETURNING batch_id, idx, attempts", worker)
            for batch_id, idx, attempt in rows:
                await tx.execute(
                    "UPDATE batch_attempts SET outcome = 'interrupted', ended_at = $4 "
                    "WHERE batch_id = $1 AND idx = $2 AND n = $3 AND outcome IS NULL",
                    batch_id, idx, attempt, now)
            return len(rows)

        return await self.db.write(run)

    async def statuses(self, batch_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """(status, expires_at) of each batch that still exists."""
        if not batch_ids:
            return {}
        marks = ", ".join(f"${i + 1}" for i in range(len(batch_ids)))

        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch(
                f"SELECT id, status, expires_at FROM batches WHERE id IN ({marks})", *batch_ids)

        return {str(r[0]): (str(r[1]), float(r[2])) for r in await self.db.read(run)}

    async def sweep(self, batch_id: str, now: float) -> None:
        """Settle what no live worker will: at expiry, every open request nobody holds
        becomes expired; in a canceling batch, canceled."""

        async def run(tx: Tx) -> None:
            row = await tx.fetchrow("SELECT status, expires_at FROM batches WHERE id = $1",
                                    batch_id)
            if row is None or row[0] == "ended":
                return
            if row[1] <= now:
                await self._settle(tx, batch_id, "expired", now)
            elif row[0] == "canceling":
                await self._settle(tx, batch_id, "canceled", now)

        await self.db.write(run)

    async def maintain(self, now: float, retention: float) -> None:
        """Sweep overdue and canceling batches; archive ended ones past their retention."""

        async def due(tx: Tx) -> list[Row]:
            return await tx.fetch(
                "SELECT id FROM batches WHERE status <> 'ended' "
                "AND (expires_at <= $1 OR status = 'canceling')", now)

        for (batch_id,) in await self.db.read(due):
            await self.sweep(str(batch_id), now)

        async def archive(tx: Tx) -> None:
            rows = await tx.fetch(
                "UPDATE batches SET archived_at = $1 WHERE status = 'ended' "
                "AND archived_at IS NULL AND ended_at <= $2 RETURNING id", now, now - retention)
            for (batch_id,) in rows:
                await self._drop_requests(tx, str(batch_id))

        await self.db.write(archive)

    async def unsubmitted(self) -> list[str]:
        """Open batches with no flow run yet (executor: prefect)."""

        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch("SELECT id FROM batches WHERE status <> 'ended' "
                                  "AND flow_run_id IS NULL ORDER BY id")

        return [str(r[0]) for r in await self.db.read(run)]

    async def flow_runs(self) -> dict[str, str]:
        """batch id -> flow run id, for the open batches that have one."""

        async def run(tx: Tx) -> list[Row]:
            return await tx.fetch("SELECT id, flow_run_id FROM batches WHERE status <> 'ended' "
                                  "AND flow_run_id IS NOT NULL")

        return {str(r[0]): str(r[1]) for r in await self.db.read(run)}

    async def set_flow_run(self, batch_id: str, flow_run_id: str | None) -> None:
        async def run(tx: Tx) -> None:
            await tx.execute("UPDATE batches SET flow_run_id = $2 WHERE id = $1", batch_id,
                             flow_run_id)

        await self.db.write(run)

    # ------------------------------------------------------------ shared steps

    async def _settle(self, tx: Tx, batch_id: str, state: str, now: float) -> None:
        changed = await tx.execute(
            f"UPDATE batch_requests SET state = '{state}', lease_owner = NULL, "
            "lease_until = NULL WHERE batch_id = $1 AND (state = 'queued' OR "
            "(state = 'running' AND lease_until < $2))", batch_id, now)
        if changed:
            await tx.execute(_count(state), batch_id, changed, now)

    async def _finalize(self, tx: Tx, batch_id: str, idx: int, state: str,
                        result: bytes | None, now: float) -> None:
        await tx.execute(
            "UPDATE batch_requests SET state = $3, result = $4, lease_owner = NULL, "
            "lease_until = NULL WHERE batch_id = $1 AND idx = $2", batch_id, idx, state, result)
        await tx.execute(_count(state), batch_id, 1, now)

    async def _drop_requests(self, tx: Tx, batch_id: str) -> None:
        await tx.execute("DELETE FROM batch_attempts WHERE batch_id = $1", batch_id)
        await tx.execute("DELETE FROM batch_requests WHERE batch_id = $1", batch_id)


def _error_result(invalid: InvalidParams) -> bytes:
    return errored_result(invalid.error_type, invalid.message)


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    return bytes(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
