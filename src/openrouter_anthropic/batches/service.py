"""The Message Batches back end inside `openrouter-anthropic serve`.

It answers the API from the store and keeps batches moving:
- `executor: local`: runs each open batch's flow body in this process (`work.py`), found
  by a scan of the store every `poll_interval`, so pending work resumes after a restart
  and instances sharing a PostgreSQL store share the work;
- `executor: prefect`: submits one flow run per batch to the Prefect deployment (and again
  if a flow run died with its batch unfinished); `openrouter-anthropic worker`s run them.
Either way it sweeps expired and canceling batches and archives old results.

The store is opened on the first batch call, or at start when one already exists, and
never before the server is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from .config import BatchConfig
from .db import open_database
from .envelope import parse_requests
from .runtime import Runtime, set_current
from .schema import create_schema
from .store import BatchStore
from .wire import BatchRow, new_batch_id, result_line
from .work import process_batch, process_chunk

log = logging.getLogger("openrouter_anthropic.batches")
_RESULT_PAGE = 128  # rows per read of the results stream: memory stays flat
_MAINTAIN_EVERY = 5  # scans between two maintenance sweeps
_RESUBMIT_EVERY = 10  # scans between two checks of the Prefect flow runs


class BatchService:
    def __init__(self, config: BatchConfig, gateway: Callable[[], Gateway]) -> None:
        self.config = config
        self._gateway = gateway
        self._store: BatchStore | None = None
        self._runtime: Runtime | None = None
        self._lock: asyncio.Lock | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._flows: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.config.check_environment()
        if self.config.is_sqlite and not self.config.sqlite_path.exists():
            return  # nothing to resume: the store is made on the first batch
        self._start_supervisor()

    def _start_supervisor(self) -> None:
        if self._supervisor is None and not self._stopping:
            self._wake = asyncio.Event()
            self._supervisor = asyncio.create_task(self._supervise(), name="batches")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        flows = list(self._flows.values())
        for flow in flows:
            flow.cancel()
        await asyncio.gather(*flows, return_exceptions=True)
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._runtime is not None:
            await self._runtime.close()
        if self._store is not None:
            await self._store.close()

    async def store(self) -> BatchStore:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._store is None:
                db = await open_database(self.config.database_url, self.config.concurrency + 4)
                try:
                    await create_schema(db)
                except BaseException:
                    await db.close()
                    raise
                self._store = BatchStore(db)
                if self.config.executor == "local":
                    self._runtime = Runtime(self.config, self._store, self._gateway(),
                                            process_chunk)
                    self._runtime.start()
                self._start_supervisor()
        return self._store

    async def _supervise(self) -> None:
        scans = 0
        while True:
            try:
                store = await self.store()
                if scans % _MAINTAIN_EVERY == 0:
                    await store.maintain(time.time(), self.config.results_retention)
                if self.config.executor == "local":
                    for batch_id in await store.open_batch_ids():
                        self._run_flow(batch_id)
                else:
                    await self._submit(store, check_runs=scans % _RESUBMIT_EVERY == 0)
            except Exception as exc:  # the store or Prefect may be down for a while
                log.warning("batch supervisor: %s", exc)
            scans += 1
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _run_flow(self, batch_id: str) -> None:
        if batch_id in self._flows or self._stopping or self._runtime is None:
            return
        runtime = self._runtime

        async def run() -> None:
            set_current(runtime)  # this task's context: its chunks and calls see it
            try:
                await process_batch(batch_id)
            except Exception:
                log.exception("batch %s: the flow failed; it resumes on the next scan", batch_id)

        task = asyncio.create_task(run(), name=f"batch-{batch_id}")
        self._flows[batch_id] = task
        task.add_done_callback(lambda _: self._flows.pop(batch_id, None))

    async def _submit(self, store: BatchStore, check_runs: bool) -> None:
        # Prefect is imported only by a server that uses it, and off the event loop (~1 s).
        await asyncio.to_thread(importlib.import_module, f"{__package__}.prefect_flows")
        from . import prefect_flows

        # batch id -> the flow run it replaces (None: its first)
        pending: dict[str, str | None] = dict.fromkeys(await store.unsubmitted())
        if check_runs:
            runs = await store.flow_runs()
            for batch_id in await prefect_flows.dead_flow_runs(runs):
                log.warning("batch %s: its flow run %s ended early; submitting another",
                            batch_id, runs[batch_id])
                pending[batch_id] = runs[batch_id]
        if not pending:
            return
        deployment_id = await prefect_flows.ensure_deployment(self.config)
        for batch_id, previous in pending.items():
            flow_run_id = await prefect_flows.submit(deployment_id, batch_id, previous)
            await store.set_flow_run(batch_id, flow_run_id)

    # ------------------------------------------------------------ the API

    async def create(self, owner: str, body: dict[str, Any]) -> BatchRow:
        requests = await asyncio.to_thread(parse_requests, body, self.config.max_requests)
        body.clear()  # the parsed tree (possibly GBs) is not needed during the insert
        store = await self.store()
        now = time.time()
        row = await store.create(new_batch_id(now), owner, requests, now,
                                 now + self.config.expire_after)
        if self.config.executor == "local":
            self._run_flow(row.id)
        elif self._wake is not None:
            self._wake.set()  # submit the flow run now, not at the next scan
        return row

    async def get(self, owner: str, batch_id: str) -> BatchRow:
        row = await (await self.store()).get(batch_id, owner)
        if row is None:
            raise NotFound(f"message batch {batch_id!r} not found")
        return row

    async def list_batches(self, owner: str, limit: int, after_id: str | None,
                   before_id: str | None) -> tuple[list[BatchRow], bool]:
        return await (await self.store()).list_batches(owner, limit, after_id, before_id)

    async def cancel(self, owner: str, batch_id: str) -> BatchRow:
        row = await (await self.store()).cancel(batch_id, owner, time.time())
        if row is None:
            raise NotFound(f"message batch {batch_id!r} not found")
        if self._runtime is not None and row.status != "ended":
            self._runtime.abort(batch_id, "canceled")  # our in-flight calls, at once
        return row

    async def delete(self, owner: str, batch_id: str) -> None:
        outcome = await (await self.store()).delete(batch_id, owner)
        if outcome == "not_found":
            raise NotFound(f"message batch {batch_id!r} not found")
        if outcome != "deleted":
            raise InvalidRequest(f"message batch {batch_id!r} is {outcome}: only ended batches "
                                 "can be deleted; cancel it first")

    async def results(self, owner: str, batch_id: str) -> AsyncIterator[bytes]:
        """The JSONL lines, read page by page (checked before the first byte is sent)."""
        store = await self.store()
        row = await self.get(owner, batch_id)
        if row.status != "ended":
            raise InvalidRequest(f"message batch {batch_id!r} is still {row.status}: its "
                                 "results are available once processing_status is ended")
        if row.archived_at is not None:
            raise NotFound(f"the results of message batch {batch_id!r} were archived "
                           f"(results are kept {self.config.results_retention / 86400:g} days)")
        return _result_lines(store, batch_id)


async def _result_lines(store: BatchStore, batch_id: str) -> AsyncIterator[bytes]:
    after = -1
    while True:
        page = await store.result_page(batch_id, after, _RESULT_PAGE)
        if not page:
            return
        yield b"".join(result_line(custom_id, state, result)
                       for _, custom_id, state, result in page)
        after = page[-1][0]

