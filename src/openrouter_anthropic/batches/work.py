"""The flow body (one batch) and the task body (one chunk of its requests).

Plain async functions with ids for parameters: `prefect_flows.py` wraps exactly these in
`@flow` / `@task` (so `process_batch_flow.fn is process_batch`), and the server runs them
as they are, in-process, without importing Prefect (`executor: local`).

Inside a chunk, requests run concurrently under the process-wide limit: a slot is taken
before a request is claimed, so an attempt is recorded only when its call can start, and
given back as soon as the upstream answers (the outcome is stored after).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter

import orjson

from ..errors import GatewayError, UpstreamError
from ..gateway import Gateway, RequestContext
from ..retry import retry_after_seconds
from .runtime import Aborted, Runtime, current, use_runtime
from .store import Checked, Claim, InvalidParams, Outcome
from .wire import errored_result, succeeded_result

log = logging.getLogger("openrouter_anthropic.batches")


async def process_batch(batch_id: str) -> dict[str, int]:
    """Work the batch off until it has ended; returns its request counts."""
    async with use_runtime() as rt:
        try:
            return await _run_batch(rt, batch_id)
        finally:
            rt.forget(batch_id)


async def _run_batch(rt: Runtime, batch_id: str) -> dict[str, int]:
    config = rt.config
    # Enough chunks at once to keep every slot of the limit busy, and one spare so a chunk
    # waiting on a retry's backoff does not leave slots idle.
    window = asyncio.Semaphore(max(2, -(-config.concurrency // config.chunk_size) + 1))

    async def chunk(index: int) -> dict[str, int]:
        async with window:
            return await rt.run_chunk(batch_id, index)

    while True:
        batch = await rt.store.get(batch_id)
        if batch is None:
            return {}
        counts = {"succeeded": batch.succeeded, "errored": batch.errored,
                  "canceled": batch.canceled, "expired": batch.expired}
        if batch.status == "ended":
            return counts
        now = time.time()
        if batch.status != "in_progress" or batch.expires_at <= now:
            # Canceling or expired: stop our calls, settle what nobody holds, and wait for
            # the calls of other workers to end (or their leases to run out).
            rt.abort(batch_id, "expired" if batch.expires_at <= now else "canceled")
            await rt.store.sweep(batch_id, now)
            await asyncio.sleep(config.poll_interval)
            continue
        rt.watch_expiry(batch_id, batch.expires_at)
        chunks = await rt.store.open_chunks(batch_id, config.chunk_size, now)
        if chunks:
            await asyncio.gather(*(chunk(i) for i in chunks))
        else:
            # What is left is in another worker's hands: look again shortly (its lease runs
            # out if it died).
            await asyncio.sleep(config.poll_interval)


async def process_chunk(batch_id: str, chunk: int) -> dict[str, int]:
    """Run the chunk's requests to a stored outcome; returns how many ended how."""
    rt = current()
    size = rt.config.chunk_size
    lo, hi = chunk * size, (chunk + 1) * size
    report: Counter[str] = Counter()
    running: set[asyncio.Task[str]] = set()

    def check(raw: bytes) -> Checked:
        outcome = check_params(rt.gateway, raw)
        if isinstance(outcome, InvalidParams):
            report["errored"] += 1
        return outcome

    try:
        while True:
            await rt.limiter.acquire()
            try:
                claim = await rt.store.claim(batch_id, lo, hi, rt.worker_id, time.time(),
                                             rt.lease_until(), check)
            except BaseException:
                rt.limiter.release()
                raise
            if claim is not None:
                running.add(asyncio.create_task(_attempt(rt, claim)))
                continue
            rt.limiter.release()
            if running:
                done, running = await asyncio.wait(running, timeout=rt.config.poll_interval,
                                                   return_when=asyncio.FIRST_COMPLETED)
                report.update(task.result() for task in done)
                continue
            outlook = await rt.store.chunk_outlook(batch_id, lo, hi, time.time())
            if not outlook.open or outlook.next_retry_at is None:
                break  # all settled, or held by another worker, or the batch stopped
            wait = outlook.next_retry_at - time.time()
            await asyncio.sleep(min(max(wait, 0.0), rt.config.poll_interval))
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return dict(report)


def check_params(gateway: Gateway, raw: bytes) -> Checked:
    """Validate one request's params as `/v1/messages` would, without sending anything."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return InvalidParams("invalid_request_error", "params: Input should be a valid object")
    if not isinstance(body, dict):
        return InvalidParams("invalid_request_error", "params: Input should be a valid object")
    # A batch answers with whole messages: `stream: true` is accepted and ignored.
    body.pop("stream", None)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens < 1:
        # /v1/messages takes 0 (a cache pre-warm); a batch request must ask for output.
        return InvalidParams("invalid_request_error",
                             "max_tokens: Input should be greater than or equal to 1")
    # Requests with gateway-run tools are planned turn by turn inside the tool loop: what
    # it refuses ends `errored` from the call itself, still before anything is sent.
    tool_loop = getattr(gateway, "tool_loop", None)
    if tool_loop is not None and tool_loop.claims(body):
        return body
    try:
        gateway.plan(body, RequestContext(request_id="batch-validation"))
    except GatewayError as exc:
        return InvalidParams(exc.error_type, exc.message)
    return body


async def _attempt(rt: Runtime, claim: Claim) -> str:
    """One upstream call for a claimed request (holding a slot), then its stored outcome."""
    rt.claims += 1
    try:
        try:
            outcome = await _call(rt, claim)
        finally:
            rt.limiter.release()
        # An answer in hand is stored even if we are being stopped right now: a shutdown
        # waits for these writes (Runtime.close), so the request is not sent again.
        stored = await rt.keep(rt.store.finish(claim, rt.worker_id, outcome, time.time()))
    finally:
        rt.claims -= 1
    if not stored:
        log.warning("batch %s request %s: the claim was taken over; its outcome is dropped",
                    claim.batch_id, claim.custom_id)
        return "lost"
    return outcome.state


async def _call(rt: Runtime, claim: Claim) -> Outcome:
    ctx = RequestContext(request_id=f"req_{claim.batch_id[-16:]}_{claim.idx}",
                         key_id=claim.owner)
    try:
        message = await rt.call(claim.batch_id, claim.body, ctx)
    except Aborted as exc:
        return Outcome(exc.state, "aborted")
    except GatewayError as exc:
        return _failure(rt, claim, exc)
    except Exception:
        log.exception("batch %s request %s failed", claim.batch_id, claim.custom_id)
        return Outcome("errored", "internal error",
                       errored_result("api_error", "internal error while processing this "
                                      "request"))
    return Outcome("succeeded", "ok", succeeded_result(message))


def _failure(rt: Runtime, claim: Claim, exc: GatewayError) -> Outcome:
    note = f"{exc.status} {exc.error_type}"
    if isinstance(exc, UpstreamError) and exc.retryable \
            and claim.attempt < rt.config.max_attempts:
        delay = retry_after_seconds(exc)
        if delay is None:
            delay = backoff(claim.attempt, rt.config.retry_base_delay,
                            rt.config.retry_max_delay)
        return Outcome("queued", f"{note}, retry in {delay:.2f} s",
                       not_before=time.time() + delay)
    return Outcome("errored", note, errored_result(exc.error_type, exc.message))


def backoff(attempt: int, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter: the n-th retry waits 0.5-1 x base * 2^(n-1)."""
    top = min(ceiling, base * 2 ** (attempt - 1))
    return random.uniform(top / 2, top)

