"""Rate limiter: the token-bucket arithmetic on both backends, then what only Redis has
(sharing between instances, atomicity, expiry, script reload, fail open).

The Redis tests run against a REAL redis-server (see tests/redis_server.py); a missing
binary fails them. Time is a fake clock (unix seconds) injected into both backends, so the
same expectations hold for both and nothing sleeps a minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from openrouter_anthropic.ratelimit import (
    _LUA_SHA,
    Decision,
    Limits,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)
from redis_server import RedisServer, redis_server_binary, start_redis_server

START = 1_700_000_000.0  # fake "now", unix seconds: 2023-11-14T22:13:20Z
H = "anthropic-ratelimit-"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def remaining(decision: Decision, what: str = "requests") -> int:
    return int(decision.headers[f"{H}{what}-remaining"])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = start_redis_server()
    except RuntimeError as exc:  # missing binary included: fail loudly, never skip
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    """Each backend with the fake clock: the arithmetic must not depend on the backend."""
    backend: RateLimiter
    if request.param == "memory":
        backend = MemoryRateLimiter(clock, wall_clock=clock)
    else:
        backend = RedisRateLimiter(request.getfixturevalue("redis_url"), clock=clock)
    yield backend
    await backend.close()


@pytest.fixture
async def make_redis(redis_url: str) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """Build RedisRateLimiters ("gateway instances") on the shared server, closed after."""
    made: list[RedisRateLimiter] = []

    def make(url: str = redis_url, **kwargs: Any) -> RedisRateLimiter:
        made.append(RedisRateLimiter(url, **kwargs))
        return made[-1]

    yield make
    for backend in made:
        await backend.close()


# ---------------------------------------------------------------- both backends


async def test_requests_count_down_then_refuse(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=3)
    decisions = [await limiter.acquire("k", limits, 10) for _ in range(3)]
    assert all(d.allowed and d.retry_after == 0 for d in decisions)
    assert [remaining(d) for d in decisions] == [2, 1, 0]
    assert all("retry-after" not in d.headers for d in decisions)

    refused = await limiter.acquire("k", limits, 10)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(20.0)  # one request refills in 60/3 s
    assert refused.headers == {
        f"{H}requests-limit": "3",
        f"{H}requests-remaining": "0",
        f"{H}requests-reset": rfc3339(START + 60),  # empty bucket: full in a minute
        "retry-after": "20",
    }
    assert not any("unified" in name for name in refused.headers)


async def test_retry_after_is_exact(limiter: RateLimiter, clock: FakeClock) -> None:
    limits = Limits(requests_per_minute=7)
    for _ in range(7):
        assert (await limiter.acquire("k", limits, 0)).allowed
    refused = await limiter.acquire("k", limits, 0)
    assert refused.headers["retry-after"] == "9"  # ceil(60 / 7 = 8.57)
    clock.advance(refused.retry_after - 0.01)
    assert not (await limiter.acquire("k", limits, 0)).allowed
    clock.advance(0.01)
    assert (await limiter.acquire("k", limits, 0)).allowed


async def test_refill_over_time(limiter: RateLimiter, clock: FakeClock) -> None:
    limits = Limits(requests_per_minute=4)
    for _ in range(4):
        assert (await limiter.acquire("k", limits, 0)).allowed
    clock.advance(60)  # back to full, never beyond
    assert [(await limiter.acquire("k", limits, 0)).allowed for _ in range(5)] == [
        True, True, True, True, False,
    ]
    clock.advance(30)  # half a minute: two requests
    assert [(await limiter.acquire("k", limits, 0)).allowed for _ in range(3)] == [
        True, True, False,
    ]


async def test_tokens_per_minute(limiter: RateLimiter) -> None:
    limits = Limits(tokens_per_minute=1000)
    first = await limiter.acquire("k", limits, 600)
    assert first.allowed and remaining(first, "tokens") == 400
    assert f"{H}requests-limit" not in first.headers  # no request limit, no request headers
    assert first.headers[f"{H}tokens-limit"] == "1000"
    assert first.headers[f"{H}tokens-reset"] == rfc3339(START + 36)  # 600 tokens at 1000/min

    refused = await limiter.acquire("k", limits, 500)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(6.0)  # 100 missing tokens at 1000/60 per s
    assert refused.headers["retry-after"] == "6"
    assert (await limiter.acquire("k", limits, 400)).allowed  # a smaller one still fits


async def test_refusal_consumes_nothing(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=2, tokens_per_minute=1000)
    assert (await limiter.acquire("k", limits, 900)).allowed
    refused = await limiter.acquire("k", limits, 200)  # refused on tokens...
    assert not refused.allowed
    assert remaining(refused) == 1  # ...without spending a request
    last = await limiter.acquire("k", limits, 100)
    assert last.allowed and remaining(last) == 0 and remaining(last, "tokens") == 0


async def test_record_corrects_the_estimate(limiter: RateLimiter, clock: FakeClock) -> None:
    limits = Limits(tokens_per_minute=1000)
    assert remaining(await limiter.acquire("k", limits, 100), "tokens") == 900
    await limiter.record("k", limits, actual_tokens=700, estimated_tokens=100)  # +600
    refused = await limiter.acquire("k", limits, 400)  # 300 left
    assert not refused.allowed
    assert remaining(refused, "tokens") == 300
    assert refused.retry_after == pytest.approx(6.0)

    await limiter.record("k", limits, actual_tokens=0, estimated_tokens=400)  # refund
    assert remaining(await limiter.acquire("k", limits, 0), "tokens") == 700


async def test_refund_never_overfills(limiter: RateLimiter) -> None:
    limits = Limits(tokens_per_minute=1000)
    await limiter.acquire("k", limits, 100)
    await limiter.record("k", limits, actual_tokens=0, estimated_tokens=5000)
    assert remaining(await limiter.acquire("k", limits, 0), "tokens") == 1000


async def test_underestimate_becomes_debt(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000)
    await limiter.acquire("k", limits, 100)
    await limiter.record("k", limits, actual_tokens=1600, estimated_tokens=100)  # 900 - 1500
    refused = await limiter.acquire("k", limits, 1)
    assert not refused.allowed
    assert remaining(refused, "tokens") == 0  # never negative in a header
    assert refused.retry_after == pytest.approx(601 * 60 / 1000)  # pay the 600 debt, +1
    assert refused.headers["retry-after"] == "37"
    assert refused.headers[f"{H}tokens-reset"] == rfc3339(START + 96)  # 1600 to refill


async def test_oversized_request_passes_on_a_full_bucket_only(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limits = Limits(tokens_per_minute=1000)
    assert (await limiter.acquire("big", limits, 5000)).allowed  # else it could never pass
    refused = await limiter.acquire("big", limits, 5000)
    assert refused.retry_after == pytest.approx(5000 * 60 / 1000)  # debt 4000 + a full bucket
    await limiter.acquire("other", limits, 1)
    assert not (await limiter.acquire("other", limits, 5000)).allowed  # not full: refused
    clock.advance(0.06)
    assert (await limiter.acquire("other", limits, 5000)).allowed


async def test_a_new_limit_starts_full(limiter: RateLimiter) -> None:
    # Configuration reload: a key that had no request limit gets one; it must not start
    # empty (a minute of 429s for nothing).
    await limiter.acquire("k", Limits(tokens_per_minute=1000), 100)
    both = Limits(requests_per_minute=2, tokens_per_minute=1000)
    decision = await limiter.acquire("k", both, 100)
    assert remaining(decision) == 1 and remaining(decision, "tokens") == 800
    lowered = Limits(requests_per_minute=1, tokens_per_minute=500)
    decision = await limiter.acquire("k", lowered, 0)  # levels capped at the new limits
    assert decision.allowed and remaining(decision) == 0
    assert remaining(decision, "tokens") == 500  # 800 -> 500


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    limits = Limits(requests_per_minute=1)
    assert (await limiter.acquire("alice", limits, 0)).allowed
    assert not (await limiter.acquire("alice", limits, 0)).allowed
    assert (await limiter.acquire("bob", limits, 0)).allowed
    assert (await limiter.acquire("a:b/c\u00e9 ", limits, 0)).allowed  # opaque ids


async def test_no_limits_means_no_headers(limiter: RateLimiter) -> None:
    for _ in range(3):
        decision = await limiter.acquire("k", Limits(), 10**9)
        assert decision == Decision(allowed=True, retry_after=0.0, headers={})
    await limiter.record("k", Limits(), 10, 1)


def test_limits_reject_zero_and_negative() -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        Limits(requests_per_minute=0)
    with pytest.raises(ValueError, match="tokens_per_minute"):
        Limits(tokens_per_minute=-5)


def test_make_rate_limiter() -> None:
    assert isinstance(make_rate_limiter(None), MemoryRateLimiter)
    assert isinstance(make_rate_limiter(""), MemoryRateLimiter)
    assert isinstance(make_rate_limiter("redis://127.0.0.1:1/0"), RedisRateLimiter)


# ---------------------------------------------------------------- memory only


async def test_memory_evicts_idle_keys(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, wall_clock=clock)
    limits = Limits(requests_per_minute=60)  # one request refills in a second
    for i in range(10):
        await limiter.acquire(f"k{i}", limits, 0)
    assert len(limiter) == 10
    clock.advance(1.0)  # every bucket full again: forgetting them loses nothing
    for i in range(5):
        await limiter.acquire(f"new{i}", limits, 0)
    assert len(limiter) == 5  # each new key dropped two idle ones


async def test_memory_keeps_keys_that_are_not_full(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, wall_clock=clock)
    limits = Limits(requests_per_minute=1)
    await limiter.acquire("busy", limits, 0)
    clock.advance(30)
    await limiter.acquire("other", limits, 0)
    assert len(limiter) == 2
    assert not (await limiter.acquire("busy", limits, 0)).allowed  # state kept


async def test_memory_hard_cap(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, wall_clock=clock, max_keys=3)
    limits = Limits(requests_per_minute=1)
    for i in range(10):
        await limiter.acquire(f"k{i}", limits, 0)
        assert len(limiter) <= 3


async def test_memory_acquire_cost() -> None:
    """The request path pays this on every call; a generous bound against regressions
    (measured ~2 µs, see the report), not a benchmark."""
    limiter = MemoryRateLimiter()
    limits = Limits(requests_per_minute=10**9, tokens_per_minute=10**12)
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        await limiter.acquire(f"k{i % 100}", limits, 1000)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per acquire()"


# ---------------------------------------------------------------- Redis only


def test_missing_redis_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RuntimeError, match="apt-get install -y redis-server"):
        redis_server_binary()


async def test_redis_instances_share_one_limit(
    make_redis: Callable[..., RedisRateLimiter],
) -> None:
    one, two = make_redis(), make_redis()  # server clock: the production setting
    limits = Limits(requests_per_minute=5)
    got = [await (one if i % 2 else two).acquire("shared", limits, 0) for i in range(5)]
    assert [remaining(d) for d in got] == [4, 3, 2, 1, 0]
    for backend in (one, two):
        refused = await backend.acquire("shared", limits, 0)
        assert not refused.allowed
        # 60/5 s, minus the refill since the first request (the server's real clock)
        assert 6.0 < refused.retry_after <= 12.0
        assert refused.headers["retry-after"] == str(math.ceil(refused.retry_after))


async def test_redis_is_atomic_under_concurrency(
    make_redis: Callable[..., RedisRateLimiter],
) -> None:
    one, two = make_redis(), make_redis()
    limits = Limits(requests_per_minute=20, tokens_per_minute=10**6)
    calls: list[Awaitable[Decision]] = [
        (one if i % 2 else two).acquire("hot", limits, 100) for i in range(50)
    ]
    decisions = await asyncio.gather(*calls)
    assert sum(d.allowed for d in decisions) == 20
    left = sorted(remaining(d) for d in decisions if d.allowed)
    assert left == list(range(20))  # every allowed call saw a distinct count


async def test_redis_tokens_atomic_under_concurrency(
    make_redis: Callable[..., RedisRateLimiter],
) -> None:
    one, two = make_redis(), make_redis()
    limits = Limits(tokens_per_minute=1000)
    decisions = await asyncio.gather(
        *[(one if i % 2 else two).acquire("hot", limits, 70) for i in range(50)]
    )
    assert sum(d.allowed for d in decisions) == 14  # 14 * 70 = 980 <= 1000 < 15 * 70


async def test_redis_keys_expire_when_full(
    make_redis: Callable[..., RedisRateLimiter], redis_server: RedisServer
) -> None:
    limiter = make_redis(prefix="t:")
    limits = Limits(requests_per_minute=600)  # one request refills in 0.1 s
    await limiter.acquire("k", limits, 0)
    with redis_server.client() as client:
        ttl = client.pttl("t:k")
        assert 0 < ttl <= 100
        assert set(client.hkeys("t:k")) == {b"r", b"u"}  # no token limit, no token level
        await asyncio.sleep(0.25)
        assert client.exists("t:k") == 0
    assert remaining(await limiter.acquire("k", limits, 0)) == 599  # fresh, full bucket


async def test_redis_unlimited_touches_nothing(
    make_redis: Callable[..., RedisRateLimiter], redis_server: RedisServer
) -> None:
    limiter = make_redis()
    await limiter.acquire("k", Limits(), 5)
    await limiter.record("k", Limits(requests_per_minute=5), 50, 5)  # no token limit
    with redis_server.client() as client:
        assert client.dbsize() == 0


async def test_redis_reloads_the_script_after_flush(
    make_redis: Callable[..., RedisRateLimiter], redis_server: RedisServer
) -> None:
    limiter = make_redis()
    limits = Limits(requests_per_minute=10)
    with redis_server.client() as client:
        client.script_flush()
        assert remaining(await limiter.acquire("k", limits, 0)) == 9  # EVALSHA fails, EVAL
        assert client.script_exists(_LUA_SHA) == [True]  # cached for the next EVALSHA
        assert remaining(await limiter.acquire("k", limits, 0)) == 8
        client.script_flush()
        assert remaining(await limiter.acquire("k", limits, 0)) == 7


async def test_redis_fails_open_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis_server()  # its own server: this test stops it
    limiter = RedisRateLimiter(server.url, outage_backoff=0.0, timeout=0.5)
    limits = Limits(requests_per_minute=1, tokens_per_minute=100)
    try:
        assert (await limiter.acquire("k", limits, 10)).allowed
        assert not (await limiter.acquire("k", limits, 10)).allowed
        server.stop()
        caplog.set_level(logging.WARNING, logger="openrouter_anthropic.ratelimit")
        for _ in range(5):
            decision = await limiter.acquire("k", limits, 10)
            assert decision == Decision(allowed=True, retry_after=0.0, headers={})
            await limiter.record("k", limits, 50, 10)  # must not raise either
        warnings = [r for r in caplog.records if "fail open" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not once per request

        server.start()  # same port, empty, no cached script
        caplog.clear()
        back = await limiter.acquire("k", limits, 10)
        assert [r.getMessage() for r in caplog.records] == [
            "rate limiter: Redis reachable again, limits enforced"
        ]
        assert back.allowed and remaining(back) == 0 and remaining(back, "tokens") == 90
        assert not (await limiter.acquire("k", limits, 10)).allowed
    finally:
        await limiter.close()
        server.close()


async def test_redis_unreachable_from_the_start_fails_open_fast() -> None:
    server = RedisServer()  # a free port, never started: connection refused
    limiter = RedisRateLimiter(server.url, outage_backoff=60.0)
    try:
        started = time.perf_counter()
        decisions = [await limiter.acquire("k", Limits(requests_per_minute=1), 0)
                     for _ in range(20)]
        assert all(d.allowed and d.headers == {} for d in decisions)
        assert time.perf_counter() - started < 1.0  # no redis-py retry loop with backoff
    finally:
        await limiter.close()
        server.close()


async def test_redis_that_never_answers_fails_open_after_the_timeout() -> None:
    # A listening socket nobody accepts on: the connection succeeds (kernel backlog), the
    # reply never comes. Each call waits `timeout`, then allows; never longer.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(100)
        port = black_hole.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.2,
                                   outage_backoff=0.0)
        try:
            started = time.perf_counter()
            decision = await limiter.acquire("k", Limits(requests_per_minute=1), 0)
            elapsed = time.perf_counter() - started
            assert decision.allowed and decision.headers == {}
            assert 0.15 < elapsed < 1.0
        finally:
            await limiter.close()


async def test_redis_outage_backoff_skips_redis(caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis_server()
    limiter = RedisRateLimiter(server.url, outage_backoff=60.0)
    limits = Limits(requests_per_minute=1)
    try:
        await limiter.acquire("k", limits, 0)
        server.stop()
        assert (await limiter.acquire("k", limits, 0)).allowed  # failure: backoff starts
        server.start()
        # Redis is back, but within the backoff the limiter does not ask it: still open.
        assert (await limiter.acquire("k", limits, 0)).headers == {}
        with server.client() as client:
            assert client.dbsize() == 0
    finally:
        await limiter.close()
        server.close()


def test_redis_server_fixture_is_real(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        info = client.info("server")
        assert str(info["redis_version"])
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
