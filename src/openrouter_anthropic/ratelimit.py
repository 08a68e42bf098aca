"""Per-client-key rate limits: requests and tokens per minute, Anthropic-style answers.

Algorithm: a token bucket per key and per dimension, of capacity ``limit`` refilling
continuously at ``limit / 60`` per second. Chosen over the two-window weighted sliding window
because (a) it is what Anthropic documents for its own limits ("continuously replenished up
to your maximum limit"), so clients see the behaviour they expect; (b) its state is two
numbers and a timestamp, O(1) to update; and (c) the wait until a request fits is *exact*
(``deficit / rate``), where the weighted window only estimates it (it assumes the previous
window's requests were evenly spread), so ``retry_after`` tells clients precisely when to
come back: not earlier (a wasted, refused retry) and not later (idle capacity).

Tokens: ``acquire`` counts one request and reserves the estimated input tokens; ``record``
corrects the reservation by ``actual - estimated`` once the answer (with its output tokens)
is known. A correction may drive the token bucket below zero: that debt is paid back by the
refill before the key is admitted again, so under-estimates are not free. A single request
larger than the whole minute budget is admitted only on a full bucket (otherwise it could
never pass) and leaves the corresponding debt.

Two backends: :class:`MemoryRateLimiter` (one process, the default) and
:class:`RedisRateLimiter` (limits shared by several gateway instances). The Redis one
*fails open*: when Redis cannot be reached every request is allowed (a warning is logged at
most once a minute), because a limiter outage must not take the gateway down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger("openrouter_anthropic.ratelimit")

WINDOW = 60.0  # seconds: limits are "per minute"
# Float slack, in seconds for waits and in units for levels: after waiting exactly
# `retry_after`, rounding (a unix time has ~0.2 µs resolution) must not leave the refill at
# "0.9999999 of a request" and refuse the client again with a retry_after of 30 ns.
_EPSILON = 1e-6
_WARN_EVERY = 60.0  # seconds between two "Redis unreachable" warnings

# (limit, remaining, reset) header names per dimension. Anthropic's input-/output-tokens
# variants are not emitted: the limit here is on their sum.
_REQUEST_HEADERS = (
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
)
_TOKEN_HEADERS = (
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
)


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None  # None: unlimited
    tokens_per_minute: int | None = None  # input+output tokens; None: unlimited

    def __post_init__(self) -> None:
        # 0 would mean "never": that is a disabled key, the authenticator's business, and a
        # bucket of capacity 0 has no finite retry_after to tell the client.
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a request would be allowed (0 if allowed)
    headers: dict[str, str]  # anthropic-ratelimit-* (+ retry-after when not allowed)


class RateLimiter(Protocol):
    async def acquire(self, key_id: str, limits: Limits, estimated_tokens: int) -> Decision:
        """Count one request and reserve `estimated_tokens`; refuse if either limit is hit."""
        ...

    async def record(
        self, key_id: str, limits: Limits, actual_tokens: int, estimated_tokens: int
    ) -> None:
        """After the answer: correct the token count by ``actual - estimated``."""
        ...

    async def close(self) -> None: ...


def _allow() -> Decision:
    """No limit applies (or fail open). A fresh dict each time: callers may add to it."""
    return Decision(allowed=True, retry_after=0.0, headers={})


# ---------------------------------------------------------------- bucket arithmetic
# Shared by the memory backend and mirrored in the Lua script below. `limit is None` means
# the dimension is unlimited; its level is then +inf, so that when a limit appears for a key
# (configuration reload) its bucket starts full, not empty.


def _refill(level: float, limit: int | None, elapsed: float) -> float:
    if limit is None:
        return math.inf
    return min(float(limit), level + elapsed * limit / WINDOW)


def _wait(level: float, need: float, limit: int | None) -> float:
    """Seconds until `level` reaches `need` (capped at the capacity, see module doc)."""
    if limit is None:
        return 0.0
    seconds = (min(need, limit) - level) * WINDOW / limit
    return seconds if seconds > _EPSILON else 0.0


def _to_full(level: float, limit: int | None) -> float:
    """Seconds until the bucket is full again, i.e. until the key's state can be forgotten."""
    if limit is None:
        return 0.0
    return max(0.0, (limit - level) * WINDOW / limit)


# ---------------------------------------------------------------- headers


@lru_cache(maxsize=1024)
def _rfc3339(epoch_second: int) -> str:
    # Cached: reset times are whole seconds and many requests share the same ones; the
    # datetime formatting is the most expensive step of a memory acquire() otherwise.
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _put(headers: dict[str, str], names: tuple[str, str, str], limit: int, level: float,
         wall_now: float) -> None:
    """One dimension's limit, remaining (a debt shows as 0) and reset.

    ``*-reset`` is when the bucket is full again (Anthropic: "fully replenished"), rounded
    up to the second so a client waiting for it never comes back early.
    """
    limit_name, remaining_name, reset_name = names
    headers[limit_name] = str(limit)
    headers[remaining_name] = str(int(level + _EPSILON)) if level > 0 else "0"
    headers[reset_name] = _rfc3339(math.ceil(wall_now + (limit - level) * WINDOW / limit))


def _decision(
    limits: Limits, requests: float, tokens: float, wall_now: float, retry_after: float
) -> Decision:
    """The answer to acquire(): allowed iff nothing to wait, headers for the set limits."""
    headers: dict[str, str] = {}
    rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
    if rpm is not None:
        _put(headers, _REQUEST_HEADERS, rpm, requests, wall_now)
    if tpm is not None:
        _put(headers, _TOKEN_HEADERS, tpm, tokens, wall_now)
    if retry_after > 0:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    # Positional: a frozen dataclass's keyword __init__ is measurably slower on this path.
    return Decision(retry_after <= 0, retry_after, headers)


# ---------------------------------------------------------------- in-memory backend


class _KeyState:
    __slots__ = ("limits", "requests", "tokens", "updated")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits  # the last ones seen: eviction needs them to tell "full"
        self.requests = math.inf  # full: refill() caps it at the limit, if any
        self.tokens = math.inf
        self.updated = now

    def refill(self, limits: Limits, now: float) -> None:
        # max(0, …): a clock going backwards must not drain the buckets.
        elapsed = max(0.0, now - self.updated)
        self.requests = _refill(self.requests, limits.requests_per_minute, elapsed)
        self.tokens = _refill(self.tokens, limits.tokens_per_minute, elapsed)
        self.updated = now
        self.limits = limits

    def full_at(self) -> float:
        """Clock time at which both buckets are full, i.e. the state can be forgotten.
        Computed on eviction only, not on every acquire()."""
        return self.updated + max(
            _to_full(self.requests, self.limits.requests_per_minute),
            _to_full(self.tokens, self.limits.tokens_per_minute),
        )


class MemoryRateLimiter:
    """Per-process limiter. Not thread-safe: use it from one event loop (nothing awaits
    between the check and the update, so concurrent tasks of that loop are atomic).

    Memory is bounded without a background task: keys are kept in least-recently-used order
    and every new key drops up to two of the oldest keys whose buckets are full again. Such
    a key is indistinguishable from an unknown one, so that eviction loses nothing. Past
    `max_keys`, the oldest key is dropped even if not idle (its limits restart full): a
    safety valve, reached only with more live keys than the operator configured.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock  # only for the RFC 3339 reset headers
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    async def acquire(self, key_id: str, limits: Limits, estimated_tokens: int) -> Decision:
        return self.acquire_now(key_id, limits, estimated_tokens)

    def acquire_now(self, key_id: str, limits: Limits, estimated_tokens: int) -> Decision:
        """Synchronous core of :meth:`acquire` (the memory backend never waits)."""
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm is None and tpm is None:
            return _allow()
        now = self._clock()
        state = self._state(key_id, limits, now)
        state.refill(limits, now)
        retry_after = max(
            _wait(state.requests, 1, rpm), _wait(state.tokens, estimated_tokens, tpm)
        )
        if retry_after == 0:  # both fit: take both (a refusal takes nothing)
            if rpm is not None:
                state.requests -= 1
            if tpm is not None:
                state.tokens -= estimated_tokens
        return _decision(limits, state.requests, state.tokens, self._wall_clock(), retry_after)

    async def record(
        self, key_id: str, limits: Limits, actual_tokens: int, estimated_tokens: int
    ) -> None:
        tpm = limits.tokens_per_minute
        correction = actual_tokens - estimated_tokens
        if tpm is None or correction == 0:
            return
        now = self._clock()
        state = self._state(key_id, limits, now)
        state.refill(limits, now)
        # A refund (over-estimate) can fill the bucket, never overfill it.
        state.tokens = min(float(tpm), state.tokens - correction)

    async def close(self) -> None:
        self._keys.clear()

    def _state(self, key_id: str, limits: Limits, now: float) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            self._evict(now)
            state = _KeyState(limits, now)
            self._keys[key_id] = state
        else:
            self._keys.move_to_end(key_id)
        return state

    def _evict(self, now: float) -> None:
        # Two per new key: the table shrinks faster than it grows while keys go idle.
        for _ in range(2):
            if not self._keys:
                return
            oldest_key, oldest = next(iter(self._keys.items()))
            if oldest.full_at() > now and len(self._keys) < self._max_keys:
                return
            del self._keys[oldest_key]


# ---------------------------------------------------------------- Redis backend

# One script for both operations so check-and-update is atomic across instances (Redis runs
# a script without interleaving other commands). KEYS[1]: the key's hash {r, t, u}: the two
# levels (absent for an unlimited dimension) and the time they were computed.
# ARGV: op ("a" acquire | "r" record), rpm, tpm (0 = unlimited), tokens (estimate for "a",
# actual - estimated for "r"), now (unix seconds; "" = the server's TIME, one clock for all
# instances). Returns {retry_after, requests, tokens, now} as strings: Redis would truncate
# Lua numbers to integers. The key expires when its buckets are full again (lossless).
_LUA = """
local op, rpm, tpm, cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'u')
local elapsed = math.max(0, now - (tonumber(s[3]) or now))
-- nil level: unlimited dimension; a missing stored level (new key, new limit) is full.
local function refill(level, limit)
  if limit == 0 then return nil end
  if level == nil then return limit end
  return math.min(limit, level + elapsed * limit / 60)
end
local function wait(level, need, limit)
  if limit == 0 then return 0 end
  local seconds = (math.min(need, limit) - level) * 60 / limit
  if seconds > 1e-6 then return seconds end
  return 0
end
local function to_full(level, limit)
  if limit == 0 then return 0 end
  return math.max(0, (limit - level) * 60 / limit)
end
local r, t = refill(tonumber(s[1]), rpm), refill(tonumber(s[2]), tpm)
local retry = 0
if op == 'a' then
  retry = math.max(wait(r, 1, rpm), wait(t, cost, tpm))
  if retry == 0 then
    if rpm > 0 then r = r - 1 end
    if tpm > 0 then t = t - cost end
  end
elseif tpm > 0 then
  t = math.min(tpm, t - cost)
end
local full = math.max(to_full(r, rpm), to_full(t, tpm))
local f = '%.17g'
if full > 0 then
  local fields = {'u', string.format(f, now)}
  if r then fields[#fields + 1] = 'r'; fields[#fields + 1] = string.format(f, r) end
  if t then fields[#fields + 1] = 't'; fields[#fields + 1] = string.format(f, t) end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000))
else
  redis.call('DEL', KEYS[1])
end
return {string.format(f, retry), string.format(f, r or 0), string.format(f, t or 0),
        string.format(f, now)}
"""
_LUA_SHA = hashlib.sha1(_LUA.encode()).hexdigest()  # what EVALSHA names it by


class RedisRateLimiter:
    """Limits shared by every gateway instance pointing at the same Redis.

    One round trip per call: EVALSHA of :data:`_LUA`, falling back to EVAL (which also
    caches the script) when the server does not know it yet, e.g. after a restart.

    `clock`: ``None`` (production) uses the Redis server's TIME, so instances with skewed
    clocks still agree. Tests pass a function returning unix seconds; it must advance at
    real speed wherever key expiry matters, since Redis expires keys on its own clock.

    Fail open: any Redis error allows the request (no rate-limit headers) and logs a warning
    at most once a minute. After a failure Redis is not asked again for `outage_backoff`
    seconds, so an unreachable server costs one timeout per interval, not one per request.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "ora:rl:",
        *,
        clock: Callable[[], float] | None = None,
        timeout: float = 0.5,
        outage_backoff: float = 1.0,
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._outage_backoff = outage_backoff
        self._down_until = -math.inf  # time.monotonic() before which Redis is skipped
        self._last_warning = -math.inf
        self._failing = False  # to log the recovery once
        # redis-py's default retries 10 times with backoff: seconds of latency per request
        # during an outage. One immediate retry on a connection error only, for a pooled
        # connection that went stale (Redis restarted); timeouts are not retried because the
        # script may have run, and counting a request twice is worse than failing open.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )

    async def acquire(self, key_id: str, limits: Limits, estimated_tokens: int) -> Decision:
        if limits.unlimited:
            return _allow()
        reply = await self._run("a", key_id, limits, estimated_tokens)
        if reply is None:
            return _allow()  # fail open
        retry_after, requests, tokens, now = reply
        return _decision(limits, requests, tokens, now, retry_after)

    async def record(
        self, key_id: str, limits: Limits, actual_tokens: int, estimated_tokens: int
    ) -> None:
        correction = actual_tokens - estimated_tokens
        if limits.tokens_per_minute is None or correction == 0:
            return
        await self._run("r", key_id, limits, correction)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(
        self, op: str, key_id: str, limits: Limits, tokens: int
    ) -> tuple[float, float, float, float] | None:
        """Run the script; its four numbers, or None when Redis failed (fail open)."""
        if time.monotonic() < self._down_until:
            return None
        args = (
            op,
            limits.requests_per_minute or 0,
            limits.tokens_per_minute or 0,
            tokens,
            "" if self._clock is None else repr(self._clock()),
        )
        try:
            reply = await self._eval(self._prefix + key_id, args)
        except (RedisError, OSError) as exc:  # OSError covers TimeoutError from asyncio
            self._outage(exc)
            return None
        if self._failing:
            self._failing = False
            log.warning("rate limiter: Redis reachable again, limits enforced")
        retry_after, requests, tokens_left, now = (float(x) for x in reply)
        return retry_after, requests, tokens_left, now

    async def _eval(self, key: str, args: tuple[str | int, ...]) -> list[bytes]:
        reply: list[bytes]
        try:
            reply = await self._redis.evalsha(_LUA_SHA, 1, key, *args)
        except NoScriptError:
            # First use on this server, or it restarted / ran SCRIPT FLUSH: EVAL runs the
            # script and caches it, so the next EVALSHA hits.
            reply = await self._redis.eval(_LUA, 1, key, *args)
        return reply

    def _outage(self, exc: Exception) -> None:
        now = time.monotonic()
        self._failing = True
        self._down_until = now + self._outage_backoff
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("rate limiter: Redis unreachable, allowing requests (fail open): %r", exc)


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis when a URL is configured (instances share limits), memory otherwise."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()
