"""Hardening: per-key rate limits through the app (memory and a REAL shared Redis), and CORS.

The Redis test starts a real `redis-server` (tests/redis_server.py); a missing binary makes
the fixture raise, so the test FAILS (errors) rather than being skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from conftest import chat_requests, message_body
from openrouter_anthropic.fake_upstream import FakeOpenRouter
from redis_server import RedisServer, start_redis_server

ORIGIN = "https://app.example"


def post(url: str, key: str | None = None, headers: dict[str, str] | None = None,
         body: dict[str, Any] | None = None) -> httpx2.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["x-api-key"] = key
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        return http.post("/v1/messages", json=body or message_body(), headers=sent)


def assert_error(resp: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type, body
    return body


# ---------------------------------------------------------------- rate limits (memory)

def test_third_request_of_a_key_is_limited_other_key_is_not(
    make_gateway: Callable[..., str], fake: FakeOpenRouter
) -> None:
    url = make_gateway(proxy_api_keys=("k1", "k2"), rate_limit_requests_per_minute=2)
    first, second = post(url, "k1"), post(url, "k1")
    for resp, remaining in ((first, "1"), (second, "0")):
        assert resp.status_code == 200, resp.text
        assert resp.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert resp.headers["anthropic-ratelimit-requests-remaining"] == remaining
        assert "anthropic-ratelimit-requests-reset" in resp.headers
    third = post(url, "k1")
    body = assert_error(third, 429, "rate_limit_error")
    assert "rate limit" in body["error"]["message"]
    assert int(third.headers["retry-after"]) >= 1
    assert third.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert third.headers["request-id"] == body["request_id"]
    assert len(chat_requests(fake)) == 2  # the refused request never went upstream
    other = post(url, "k2")
    assert other.status_code == 200, other.text
    assert other.headers["anthropic-ratelimit-requests-remaining"] == "1"


def test_streaming_responses_carry_rate_limit_headers(make_gateway: Callable[..., str],
                                                      fake: FakeOpenRouter) -> None:
    url = make_gateway(proxy_api_keys=("k1",), rate_limit_requests_per_minute=5)
    with httpx2.Client(base_url=url, timeout=10.0) as http, http.stream(
        "POST", "/v1/messages", json=message_body(stream=True), headers={"x-api-key": "k1"}
    ) as resp:
        resp.read()
    assert resp.status_code == 200
    assert resp.headers["anthropic-ratelimit-requests-limit"] == "5"
    assert resp.headers["anthropic-ratelimit-requests-remaining"] == "4"


def test_key_rate_limits_override_one_key(make_gateway: Callable[..., str],
                                          fake: FakeOpenRouter) -> None:
    url = make_gateway(proxy_api_keys=("k1", "k2"), rate_limit_requests_per_minute=1,
                       key_rate_limits={"k2": {"requests_per_minute": 3}})
    assert post(url, "k1").status_code == 200
    assert_error(post(url, "k1"), 429, "rate_limit_error")
    statuses = [post(url, "k2").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_token_limit_refuses_when_spent(make_gateway: Callable[..., str],
                                        fake: FakeOpenRouter) -> None:
    url = make_gateway(proxy_api_keys=("k1",), rate_limit_tokens_per_minute=1000)
    first = post(url, "k1", body=message_body("x " * 2000))  # ~1000 tokens declared
    assert first.status_code == 200, first.text
    assert first.headers["anthropic-ratelimit-tokens-limit"] == "1000"
    second = post(url, "k1")
    assert_error(second, 429, "rate_limit_error")
    assert "retry-after" in second.headers


def test_unlimited_gateway_sends_no_rate_limit_headers(gateway_url: str,
                                                       fake: FakeOpenRouter) -> None:
    resp = post(gateway_url, "anything")
    assert resp.status_code == 200
    assert not [h for h in resp.headers if h.startswith("anthropic-ratelimit-")]


# ---------------------------------------------------------------- rate limits (Redis)

@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis_server()  # raises (test error) when redis-server is missing
    try:
        yield server
    finally:
        server.close()


def test_two_gateways_share_a_limit_through_redis(
    make_gateway: Callable[..., str], fake: FakeOpenRouter, redis_server: RedisServer
) -> None:
    with redis_server.client() as client:
        client.flushall()
    settings: dict[str, Any] = {"proxy_api_keys": ("k1", "k2"),
                                "rate_limit_requests_per_minute": 2,
                                "redis_url": redis_server.url}
    one, two = make_gateway(**settings), make_gateway(**settings)
    first = post(one, "k1")
    assert first.status_code == 200, first.text
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    second = post(two, "k1")
    assert second.status_code == 200, second.text
    assert second.headers["anthropic-ratelimit-requests-remaining"] == "0"
    third = post(one, "k1")
    assert_error(third, 429, "rate_limit_error")
    assert "retry-after" in third.headers
    assert_error(post(two, "k1"), 429, "rate_limit_error")
    assert post(two, "k2").status_code == 200  # another key has its own bucket
    with redis_server.client() as client:
        assert client.dbsize() > 0  # the state really lives in Redis


# ---------------------------------------------------------------- CORS

def test_no_cors_origins_means_no_cors_headers(gateway_url: str,
                                               fake: FakeOpenRouter) -> None:
    with httpx2.Client(base_url=gateway_url, timeout=10.0) as http:
        pre = http.options("/v1/messages", headers={
            "origin": ORIGIN, "access-control-request-method": "POST"})
        resp = http.post("/v1/messages", json=message_body(), headers={"origin": ORIGIN})
    assert resp.status_code == 200
    for r in (pre, resp):
        assert not [h for h in r.headers if h.startswith("access-control-")], r.headers


def test_cors_preflight_and_post_from_an_allowed_origin(make_gateway: Callable[..., str],
                                                        fake: FakeOpenRouter) -> None:
    url = make_gateway(cors_origins=(ORIGIN,), proxy_api_keys=("k1",))
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        # Browsers send no credentials on a preflight: it must pass without a key.
        pre = http.options("/v1/messages", headers={
            "origin": ORIGIN, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-api-key, anthropic-version"})
        resp = http.post("/v1/messages", json=message_body(),
                         headers={"origin": ORIGIN, "x-api-key": "k1"})
        denied = http.post("/v1/messages", json=message_body(), headers={"origin": ORIGIN})
    assert pre.status_code == 204, pre.text
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    allowed_headers = pre.headers["access-control-allow-headers"].lower()
    for name in ("content-type", "x-api-key", "anthropic-version"):
        assert name in allowed_headers
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "request-id" in resp.headers.get("access-control-expose-headers", "")
    # An error answer is readable by the page too.
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN


def test_cors_other_origin_gets_no_headers(make_gateway: Callable[..., str],
                                           fake: FakeOpenRouter) -> None:
    url = make_gateway(cors_origins=(ORIGIN,))
    evil = "https://evil.example"
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        pre = http.options("/v1/messages", headers={
            "origin": evil, "access-control-request-method": "POST"})
        resp = http.post("/v1/messages", json=message_body(), headers={"origin": evil})
    assert resp.status_code == 200
    assert pre.status_code != 204 or "access-control-allow-origin" not in pre.headers
    for r in (pre, resp):
        assert "access-control-allow-origin" not in r.headers, r.headers
