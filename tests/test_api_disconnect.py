"""A client that hangs up must make the gateway drop its upstream connection, so OpenRouter
stops generating (and billing) for nobody."""

from __future__ import annotations

import httpx2
import pytest

from conftest import message_body, wait_for
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply

LONG_TEXT = " ".join(f"word{i}" for i in range(200))


def assert_upstream_closed(fake: FakeOpenRouter) -> None:
    assert wait_for(lambda: fake.disconnects >= 1, timeout=5.0), (
        f"the upstream connection stayed open: {fake.stats()}")


def test_hang_up_mid_stream_closes_upstream(gateway_url: str, fake: FakeOpenRouter) -> None:
    fake.chunk_gap = 0.05  # 200 chunks: about 10 s if nobody stopped it
    fake.script(Reply(text=LONG_TEXT))
    seen = b""
    with (httpx2.Client(base_url=gateway_url, timeout=10.0) as http,
          http.stream("POST", "/v1/messages", json=message_body(stream=True)) as resp):
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            seen += chunk
            if seen.count(b"text_delta") >= 2:
                break
    assert b"message_start" in seen
    assert_upstream_closed(fake)


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "before-first-byte"])
def test_hang_up_while_waiting_closes_upstream(gateway_url: str, fake: FakeOpenRouter,
                                               stream: bool) -> None:
    fake.script(Reply(text="never sent", hang=True))
    with (httpx2.Client(base_url=gateway_url, timeout=0.5) as http,
          pytest.raises(httpx2.TimeoutException)):
        http.post("/v1/messages", json=message_body(stream=stream))
    assert_upstream_closed(fake)


def test_gateway_still_serves_after_hang_ups(gateway_url: str, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="never sent", hang=True), Reply(text="fine"))
    with (httpx2.Client(base_url=gateway_url, timeout=0.5) as http,
          pytest.raises(httpx2.TimeoutException)):
        http.post("/v1/messages", json=message_body())
    with httpx2.Client(base_url=gateway_url, timeout=5.0) as http:
        resp = http.post("/v1/messages", json=message_body())
    assert resp.status_code == 200
    assert resp.json()["content"][0]["text"] == "fine"
