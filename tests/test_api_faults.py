"""Upstream faults through the real gateway: each ends in an Anthropic-shaped error, and the
gateway keeps serving afterwards."""

from __future__ import annotations

import json
import logging

import anthropic
import httpx2
import pytest

from conftest import message_body, parse_sse
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply


def test_garbage_in_a_stream_ends_with_an_error_event(http: httpx2.Client,
                                                      fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="hello there", garbage=True))
    response = http.post("/v1/messages", json=message_body(stream=True))
    events = parse_sse(response.text)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "invalid JSON" in events[-1][1]["error"]["message"]
    assert http.post("/v1/messages", json=message_body()).status_code == 200


def test_garbage_instead_of_a_body_is_an_api_error(http: httpx2.Client,
                                                    fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="hello", garbage=True))
    response = http.post("/v1/messages", json=message_body())
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"
    assert response.headers["request-id"] == response.json()["request_id"]


def test_provider_error_inside_a_200_body_is_mapped(client: anthropic.Anthropic,
                                                     fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="partial", error_in_200=True))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="big", max_tokens=50,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code >= 500
    assert caught.value.body["type"] == "error"  # type: ignore[index]


def test_access_log_line_carries_key_ttft_cost(make_gateway: object, fake: FakeOpenRouter,
                                               caplog: pytest.LogCaptureFixture) -> None:
    url = make_gateway(access_log=True, proxy_api_keys=("k-one",))  # type: ignore[operator]
    fake.script(Reply(text="a b c", usage={"cost": 0.0042}))
    caplog.set_level(logging.INFO, logger="openrouter_anthropic.access")
    with httpx2.Client(base_url=url, headers={"x-api-key": "k-one"}) as http:
        response = http.post("/v1/messages", json=message_body(stream=True))
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "openrouter_anthropic.access"]
    fields = lines[-1].fields  # type: ignore[attr-defined]
    assert fields["request_id"] == response.headers["request-id"]
    assert fields["key_id"].startswith("key_") and "k-one" not in json.dumps(fields)
    assert fields["ttft_ms"] >= 0
    assert fields["cost_usd"] == pytest.approx(0.0042)
    assert fields["usage"]["output_tokens"] > 0
