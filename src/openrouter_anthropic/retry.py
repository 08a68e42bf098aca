"""Upstream retries and fallback models, before the first byte reaches the client.

Each model of the route (the routed one, then its fallbacks in order) gets up to
`max_retries` retries on a retryable failure (429, 5xx, connection errors, timeouts), with
exponential backoff and full jitter, honouring the upstream's Retry-After when it is not
longer than `retry_max_wait`. Non-retryable errors (400, 401, 402, 403, 404...) end the
attempt at once: another model would fail the same request the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from .errors import UpstreamError

T = TypeVar("T")
log = logging.getLogger("openrouter_anthropic.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A Retry-After longer than this is not waited for: the client gets it instead.
    max_wait: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based); None: do not retry."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


def retry_after_seconds(error: UpstreamError) -> float | None:
    value = error.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


async def call_with_retries(
    models: Sequence[str],
    call: Callable[[str], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[str, UpstreamError], None] | None = None,
) -> T:
    last: UpstreamError | None = None
    for model in models:
        for attempt in range(policy.max_retries + 1):
            try:
                return await call(model)
            except UpstreamError as exc:
                last = exc
                if not exc.retryable:
                    raise _final(exc) from exc
                wait = policy.delay(attempt, retry_after_seconds(exc))
                if wait is None or attempt == policy.max_retries:
                    break
                if on_retry is not None:
                    on_retry(model, exc)
                log.info("retrying %s in %.2f s after %s: %s", model, wait, exc.status,
                         exc.message)
                await asyncio.sleep(wait)
        if model != models[-1] and last is not None:
            log.warning("model %s failed (%s); falling back", model, last.message)
            if on_retry is not None:
                on_retry(model, last)
    assert last is not None
    raise _final(last) from last


def _final(error: UpstreamError) -> UpstreamError:
    """The gateway gave up: tell the client whether retrying itself makes sense."""
    error.headers.setdefault("x-should-retry", "true" if error.retryable else "false")
    return error
