"""Hardening: upstream retries, fallback models, timeouts and keep-alive pings, end to end.

Every test runs the real app (uvicorn in a thread) against the fake OpenRouter, with small
retry delays so the whole file stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from conftest import chat_requests, message_body, parse_sse
from openrouter_anthropic.fake_upstream import FakeOpenRouter, MidstreamError, Reply

FAST_RETRIES: dict[str, Any] = {"retry_base_delay": 0.01, "retry_max_delay": 0.05}


def post(url: str, body: dict[str, Any], timeout: float = 10.0) -> httpx2.Response:
    with httpx2.Client(base_url=url, timeout=timeout) as http:
        return http.post("/v1/messages", json=body)


def stream_raw(url: str, body: dict[str, Any], timeout: float = 10.0
               ) -> tuple[httpx2.Response, str]:
    with httpx2.Client(base_url=url, timeout=timeout) as http, \
            http.stream("POST", "/v1/messages", json=body) as resp:
        return resp, resp.read().decode()


def assert_error(resp: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type, body
    assert body["request_id"] == resp.headers["request-id"]
    return body


# ---------------------------------------------------------------- retries

def test_429_once_then_ok_is_retried(make_gateway: Callable[..., str],
                                     fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=2, **FAST_RETRIES)
    fake.script(Reply(status=429, retry_after=0.05), Reply(text="second time lucky"))
    resp = post(url, message_body())
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] == [{"type": "text", "text": "second time lucky"}]
    assert len(chat_requests(fake)) == 2


def test_429_with_retry_after_zero_is_retried(make_gateway: Callable[..., str],
                                              fake: FakeOpenRouter) -> None:
    # retry_after=0: the fake sends no Retry-After header; the gateway backs off itself.
    url = make_gateway(max_retries=2, **FAST_RETRIES)
    fake.script(Reply(status=429, retry_after=0), Reply(text="ok"))
    resp = post(url, message_body())
    assert resp.status_code == 200, resp.text
    assert len(chat_requests(fake)) == 2


def test_500_three_times_gives_up_after_max_retries(make_gateway: Callable[..., str],
                                                    fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=2, **FAST_RETRIES)
    fake.script(*(Reply(status=500, error_message="boom") for _ in range(3)),
                Reply(text="must not be reached"))
    resp = post(url, message_body())
    assert_error(resp, 500, "api_error")
    assert resp.headers.get("x-should-retry") == "true"
    assert len(chat_requests(fake)) == 3


def test_streaming_request_is_retried_before_the_first_byte(
    make_gateway: Callable[..., str], fake: FakeOpenRouter
) -> None:
    url = make_gateway(max_retries=2, **FAST_RETRIES)
    fake.script(Reply(status=503), Reply(text="streamed after a retry"))
    resp, raw = stream_raw(url, message_body(stream=True))
    assert resp.status_code == 200
    events = parse_sse(raw)
    assert events[-1][0] == "message_stop"
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "streamed after a retry"
    assert len(chat_requests(fake)) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403])
def test_client_errors_are_never_retried(make_gateway: Callable[..., str],
                                         fake: FakeOpenRouter, status: int) -> None:
    url = make_gateway(max_retries=3, **FAST_RETRIES)
    fake.script(Reply(status=status), Reply(text="must not be reached"))
    resp = post(url, message_body())
    assert resp.status_code == status, resp.text
    assert resp.headers.get("x-should-retry") == "false"
    assert len(chat_requests(fake)) == 1


def test_retry_after_longer_than_max_wait_is_passed_to_the_client(
    make_gateway: Callable[..., str], fake: FakeOpenRouter
) -> None:
    url = make_gateway(max_retries=3, retry_max_wait=1.0, **FAST_RETRIES)
    fake.script(Reply(status=429, retry_after=30), Reply(text="must not be reached"))
    started = time.monotonic()
    resp = post(url, message_body())
    took = time.monotonic() - started
    assert_error(resp, 429, "rate_limit_error")
    assert resp.headers.get("retry-after") == "30"
    assert took < 2.0, f"the gateway waited {took:.1f} s for a Retry-After it should refuse"
    assert len(chat_requests(fake)) == 1


def test_midstream_error_is_not_retried(make_gateway: Callable[..., str],
                                        fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=3, **FAST_RETRIES)
    fake.script(
        Reply(text="one two three four five six",
              midstream_error=MidstreamError(code=502, message="Provider disconnected")),
        Reply(text="must not be reached"),
    )
    resp, raw = stream_raw(url, message_body(stream=True))
    assert resp.status_code == 200
    events = parse_sse(raw)
    assert events[-1][0] == "error", events[-3:]
    assert any(n == "content_block_delta" for n, _ in events)  # content went out first
    assert len(chat_requests(fake)) == 1


# ---------------------------------------------------------------- fallbacks

def test_503_falls_back_to_the_next_model(make_gateway: Callable[..., str],
                                          fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=0, fallbacks={"big": ["openai/gpt-4o"]})
    fake.script(Reply(status=503), Reply(text="answered by the fallback"))
    resp = post(url, message_body())
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["content"] == [{"type": "text", "text": "answered by the fallback"}]
    assert data["model"] == message_body()["model"]  # the client's name, not the slug
    models = [b["model"] for b in chat_requests(fake)]
    assert models == ["anthropic/claude-sonnet-4", "openai/gpt-4o"]


def test_fallback_when_streaming(make_gateway: Callable[..., str],
                                 fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=0, fallbacks={"big": ["openai/gpt-4o"]})
    fake.script(Reply(status=503), Reply(text="fallback stream"))
    resp, raw = stream_raw(url, message_body(stream=True))
    assert resp.status_code == 200
    assert parse_sse(raw)[-1][0] == "message_stop"
    assert [b["model"] for b in chat_requests(fake)] == ["anthropic/claude-sonnet-4",
                                                         "openai/gpt-4o"]


def test_400_does_not_fall_back(make_gateway: Callable[..., str],
                                fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=0, fallbacks={"big": ["openai/gpt-4o"]})
    fake.script(Reply(status=400, error_message="bad field"), Reply(text="nope"))
    resp = post(url, message_body())
    assert_error(resp, 400, "invalid_request_error")
    assert len(chat_requests(fake)) == 1


def test_all_fallbacks_failing_reports_the_last_error(make_gateway: Callable[..., str],
                                                      fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=0, fallbacks={"big": ["openai/gpt-4o"]})
    fake.script(Reply(status=503), Reply(status=503), Reply(text="must not be reached"))
    resp = post(url, message_body())
    assert_error(resp, 529, "overloaded_error")
    assert resp.headers.get("x-should-retry") == "true"
    assert len(chat_requests(fake)) == 2


# ---------------------------------------------------------------- timeouts

@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeout_is_504(make_gateway: Callable[..., str], fake: FakeOpenRouter,
                                   stream: bool) -> None:
    url = make_gateway(max_retries=0, first_byte_timeout=0.3)
    fake.script(Reply(hang=True))
    started = time.monotonic()
    resp = post(url, message_body(stream=stream))
    assert_error(resp, 504, "timeout_error")
    assert time.monotonic() - started < 3.0
    # The gateway still serves afterwards.
    assert post(url, message_body()).status_code == 200


def test_idle_timeout_ends_the_stream_with_an_error_event(
    make_gateway: Callable[..., str], fake: FakeOpenRouter
) -> None:
    url = make_gateway(max_retries=0, idle_timeout=0.3, ping_interval=0.1)
    fake.chunk_gap = 1.5
    fake.script(Reply(text="alpha beta gamma delta"))
    started = time.monotonic()
    resp, raw = stream_raw(url, message_body(stream=True))
    took = time.monotonic() - started
    assert resp.status_code == 200
    events = parse_sse(raw)
    name, data = events[-1]
    assert name == "error", events[-3:]
    assert data["error"]["type"] == "timeout_error"
    assert not any(n == "message_stop" for n, _ in events)
    assert took < 1.4, f"the stream waited {took:.1f} s for an idle upstream"


def test_pings_are_sent_while_the_upstream_is_silent(make_gateway: Callable[..., str],
                                                     fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=0, ping_interval=0.2)
    fake.chunk_gap = 1.0
    fake.chunks = 2  # deltas: role, "first ", "second" -> two gaps of 1 s
    fake.script(Reply(text="first second"))
    resp, raw = stream_raw(url, message_body(stream=True))
    assert resp.status_code == 200
    events = parse_sse(raw)
    names = [n for n, _ in events]
    assert names[-1] == "message_stop"
    # The fake sends its comment lines only before the first chunk; pings between the two
    # text deltas can only come from the gateway's own ping timer.
    deltas = [i for i, n in enumerate(names) if n == "content_block_delta"]
    assert len(deltas) >= 2, names
    between = names[deltas[0]:deltas[-1]].count("ping")
    assert between >= 2, names
    assert "event: ping" in raw
