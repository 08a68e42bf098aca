"""What a process working batches off holds: the store, the gateway, the concurrency limit,
its leases (renewed by a heartbeat) and the upstream calls in flight (aborted on cancel or
expiry, also when another process cancelled).

The flow and task bodies (`work.py`) take ids only and find the runtime here: the server
sets it for the flows it runs in-process; in a Prefect flow-run process, the first flow
builds one from the settings the worker passed in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

from ..gateway import Gateway, RequestContext
from ..settings import Settings
from .config import BatchConfig
from .store import BatchStore

log = logging.getLogger("openrouter_anthropic.batches")

T = TypeVar("T")
ChunkRunner = Callable[[str, int], Awaitable[dict[str, int]]]
# Same variable as `serve --workers`: the worker hands its Settings to flow-run processes.
SETTINGS_ENV = "OPENROUTER_ANTHROPIC_SETTINGS_JSON"


class Aborted(Exception):
    """An upstream call stopped because its batch was canceled or expired."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


class Runtime:
    def __init__(self, config: BatchConfig, store: BatchStore, gateway: Gateway,
                 run_chunk: ChunkRunner, *, owns: bool = False) -> None:
        self.config = config
        self.store = store
        self.gateway = gateway
        self.run_chunk = run_chunk
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.limiter = asyncio.Semaphore(config.concurrency)
        self.claims = 0
        self._owns = owns  # close the store and the upstream too (a flow-run process)
        self._calls: dict[str, set[asyncio.Future[dict[str, Any]]]] = {}
        self._aborted: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="batches-heartbeat")

    def lease_until(self) -> float:
        return time.time() + self.config.lease

    async def call(self, batch_id: str, body: dict[str, Any],
                   ctx: RequestContext) -> dict[str, Any]:
        """`Gateway.messages`, abortable per batch (raises Aborted)."""
        reason = self._aborted.get(batch_id)
        if reason is not None:
            raise Aborted(reason)
        call = asyncio.ensure_future(self.gateway.messages(body, ctx))
        calls = self._calls.setdefault(batch_id, set())
        calls.add(call)
        try:
            return await call
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if (me is not None and me.cancelling()) or not call.cancelled():
                raise  # we are being stopped ourselves: not an abort
            raise Aborted(self._aborted.get(batch_id, "canceled")) from None
        finally:
            calls.discard(call)

    async def keep(self, write: Coroutine[Any, Any, T]) -> T:
        """Run a store write to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    def abort(self, batch_id: str, state: str) -> None:
        """Stop the batch's upstream calls; their requests end `state` (canceled/expired)."""
        self._aborted.setdefault(batch_id, state)
        for call in list(self._calls.get(batch_id, ())):
            call.cancel()

    def aborted(self, batch_id: str) -> str | None:
        return self._aborted.get(batch_id)

    def watch_expiry(self, batch_id: str, expires_at: float) -> None:
        if batch_id in self._timers:
            return
        loop = asyncio.get_running_loop()
        delay = max(expires_at - time.time(), 0.0)
        self._timers[batch_id] = loop.call_later(delay, self.abort, batch_id, "expired")

    def forget(self, batch_id: str) -> None:
        """The batch's flow ended here."""
        timer = self._timers.pop(batch_id, None)
        if timer is not None:
            timer.cancel()
        if not self._calls.get(batch_id):
            self._calls.pop(batch_id, None)
            self._aborted.pop(batch_id, None)

    async def _beat(self) -> None:
        interval = min(self.config.lease / 3, self.config.poll_interval)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat_once()
            except Exception as exc:  # the store may be briefly unreachable: try again
                log.warning("batch heartbeat failed: %s", exc)

    async def _beat_once(self) -> None:
        if self.claims:
            await self.store.renew_leases(self.worker_id, self.lease_until())
        active = [b for b, calls in self._calls.items() if calls]
        if not active:
            return
        # Another process (the API server, another instance) may have canceled a batch.
        statuses = await self.store.statuses(active)
        now = time.time()
        for batch_id in active:
            status, expires_at = statuses.get(batch_id, ("gone", float("inf")))
            if expires_at <= now:
                self.abort(batch_id, "expired")
            elif status != "in_progress":
                self.abort(batch_id, "canceled")

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        try:
            released = await self.store.release_leases(self.worker_id, time.time())
        except Exception as exc:
            log.warning("could not release this worker's claims (%s); they are taken over "
                        "when their leases run out", exc)
        else:
            if released:
                log.info("released %d interrupted batch requests for a restart", released)
        if self._owns:
            await self.store.close()
            await self.gateway.upstream.close()


# ---------------------------------------------------------------- finding the runtime

_current: ContextVar[Runtime | None] = ContextVar("batch_runtime", default=None)
RuntimeFactory = Callable[[], Awaitable[Runtime]]
_factory: list[RuntimeFactory] = []


def set_current(runtime: Runtime) -> None:
    _current.set(runtime)


def current() -> Runtime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("no batch runtime in this context (the task ran outside its flow)")
    return runtime


def set_factory(factory: RuntimeFactory) -> None:
    """How a process without a server builds its runtime (Prefect flow-run processes)."""
    _factory[:] = [factory]


@contextlib.asynccontextmanager
async def use_runtime() -> AsyncIterator[Runtime]:
    runtime = _current.get()
    if runtime is not None:
        yield runtime
        return
    if not _factory:
        raise RuntimeError("no batch runtime: run batches inside `openrouter-anthropic serve` "
                           "or an `openrouter-anthropic worker`")
    runtime = await _factory[0]()
    token = _current.set(runtime)
    runtime.start()
    try:
        yield runtime
    finally:
        _current.reset(token)
        await runtime.close()


# ---------------------------------------------------------------- settings between processes


def settings_to_env(settings: Settings) -> str:
    return json.dumps(dataclasses.asdict(settings))  # tuples become lists, read back as such


def settings_from_env() -> Settings:
    raw = os.environ.get(SETTINGS_ENV)
    if raw:
        return Settings.from_mapping(json.loads(raw))
    return Settings.load(os.environ.get("OPENROUTER_ANTHROPIC_CONFIG") or None)
