"""Hardening: a burst of malformed requests gets Anthropic-shaped 400/413 answers naming
the offending field, nothing reaches the upstream, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import orjson
import pytest

from conftest import MODEL, chat_requests, message_body
from openrouter_anthropic.fake_upstream import FakeOpenRouter

USER = {"role": "user", "content": "hi"}


def body(**changes: Any) -> bytes:
    out: dict[str, Any] = message_body()
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return orjson.dumps(out)


def with_messages(*messages: Any) -> bytes:
    return body(messages=list(messages))


# (id, raw body, expected text in error.message). All must be 400 invalid_request_error.
BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("truncated-json", b'{"model": "claude-sonnet-4-5", "max', "JSON"),
    ("empty-body", b"", "body"),
    ("whitespace-body", b"   \n ", "body"),
    ("json-array", b"[1, 2, 3]", "object"),
    ("json-string", b'"hello"', "object"),
    ("invalid-utf8", b'{"model": "\xff\xfe", "max_tokens": 5}', "JSON"),
    ("deeply-nested", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "JSON"),
    ("nan-literal", b'{"model": "claude-sonnet-4-5", "max_tokens": NaN, "messages": []}',
     "JSON"),
    ("model-missing", body(model=...), "model"),
    ("model-int", body(model=123), "model"),
    ("model-empty", body(model=""), "model"),
    ("max_tokens-missing", body(max_tokens=...), "max_tokens"),
    ("max_tokens-string", body(max_tokens="100"), "max_tokens"),
    ("max_tokens-negative", body(max_tokens=-1), "max_tokens"),
    ("max_tokens-float", body(max_tokens=1.5), "max_tokens"),
    ("max_tokens-bool", body(max_tokens=True), "max_tokens"),
    ("max_tokens-null", body(max_tokens=None), "max_tokens"),
    ("messages-missing", body(messages=...), "messages"),
    ("messages-string", body(messages="hi"), "messages"),
    ("messages-object", body(messages={"role": "user", "content": "hi"}), "messages"),
    ("message-null", with_messages(None), "messages.0"),
    ("message-string", with_messages("hi"), "messages.0"),
    ("message-no-content", with_messages({"role": "user"}), "messages.0.content"),
    ("message-bad-role", with_messages({"role": "robot", "content": "x"}), "messages.0.role"),
    ("message-no-role", with_messages({"content": "x"}), "messages.0.role"),
    ("content-int", with_messages({"role": "user", "content": 5}), "messages.0.content"),
    ("block-not-object", with_messages({"role": "user", "content": ["hi"]}),
     "messages.0.content.0"),
    ("block-no-type", with_messages({"role": "user", "content": [{"text": "hi"}]}),
     "messages.0.content.0"),
    ("text-block-no-text", with_messages({"role": "user", "content": [{"type": "text"}]}),
     "messages.0.content.0.text"),
    ("text-block-int-text",
     with_messages({"role": "user", "content": [{"type": "text", "text": 7}]}),
     "messages.0.content.0.text"),
    ("image-no-source", with_messages({"role": "user", "content": [{"type": "image"}]}),
     "messages.0.content.0.source"),
    ("tool_use-no-id", with_messages(
        USER, {"role": "assistant", "content": [{"type": "tool_use", "name": "Read",
                                                  "input": {}}]}),
     "messages.1.content.0.id"),
    ("tool_use-no-name", with_messages(
        USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                                  "input": {}}]}),
     "messages.1.content.0.name"),
    ("tool_result-no-id", with_messages(
        {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}),
     "tool_use_id"),
    ("stream-string", body(stream="yes"), "stream"),
    ("stream-int", body(stream=1), "stream"),
    ("temperature-string", body(temperature="hot"), "temperature"),
    ("temperature-bool", body(temperature=True), "temperature"),
    ("top_p-list", body(top_p=[]), "top_p"),
    ("top_k-float", body(top_k=1.5), "top_k"),
    ("system-int", body(system=5), "system"),
    ("system-bad-block", body(system=[{"type": "image"}]), "system"),
    ("tools-string", body(tools="Read"), "tools"),
    ("tool-no-schema", body(tools=[{"name": "Read"}]), "tools.0.input_schema"),
    ("tool-no-name", body(tools=[{"input_schema": {"type": "object"}}]), "tools.0.name"),
    ("tool_choice-string", body(tools=[{"name": "Read", "input_schema": {"type": "object"}}],
                                tool_choice="auto"), "tool_choice"),
    ("stop_sequences-string", body(stop_sequences="STOP"), "stop_sequences"),
    ("thinking-string", body(thinking="yes"), "thinking"),
    ("thinking-bad-type", body(thinking={"type": "sometimes"}), "thinking.type"),
    ("thinking-budget-string", body(thinking={"type": "enabled", "budget_tokens": "lots"}),
     "budget_tokens"),
    ("output-format-type", body(output_config={"format": {"type": "xml"}}),
     "output_config.format"),
    ("output-format-no-schema", body(output_config={"format": {"type": "json_schema"}}),
     "output_config.format.schema"),
    ("effort-unknown", body(output_config={"effort": "ultra"}), "output_config.effort"),
]


def post_raw(http: httpx2.Client, raw: bytes, path: str = "/v1/messages") -> httpx2.Response:
    return http.post(path, content=raw, headers={"content-type": "application/json"})


def assert_anthropic_error(resp: httpx2.Response, status: int, error_type: str,
                           names: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    data = resp.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == error_type, data
    assert names in data["error"]["message"], data["error"]["message"]
    assert data["request_id"] == resp.headers["request-id"]
    assert resp.headers.get("x-should-retry") == "false"


@pytest.fixture
def http(gateway_url: str) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=gateway_url, timeout=10.0) as raw:
        yield raw


@pytest.mark.parametrize(("raw", "names"), [(raw, names) for _, raw, names in BAD_BODIES],
                         ids=[case for case, _, _ in BAD_BODIES])
def test_malformed_request_is_a_named_400(http: httpx2.Client, fake: FakeOpenRouter,
                                          raw: bytes, names: str) -> None:
    assert_anthropic_error(post_raw(http, raw), 400, "invalid_request_error", names)
    assert not chat_requests(fake)


@pytest.mark.parametrize("case", ["truncated-json", "messages-string", "message-no-content",
                                  "model-int", "json-array"])
def test_count_tokens_rejects_malformed_requests(http: httpx2.Client, fake: FakeOpenRouter,
                                                 case: str) -> None:
    raw, names = next((r, n) for c, r, n in BAD_BODIES if c == case)
    assert_anthropic_error(post_raw(http, raw, "/v1/messages/count_tokens"), 400,
                           "invalid_request_error", names)


def test_empty_messages_list_is_a_400_naming_messages(http: httpx2.Client,
                                                      fake: FakeOpenRouter) -> None:
    resp = post_raw(http, body(messages=[]))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in resp.json()["error"]["message"]
    assert not chat_requests(fake)


def test_body_over_max_body_bytes_is_413(make_gateway: Callable[..., str],
                                         fake: FakeOpenRouter) -> None:
    url = make_gateway(max_body_bytes=64 * 1024)
    big = message_body("x" * 100_000)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        declared = http.post("/v1/messages", json=big)

        def chunks() -> Iterator[bytes]:  # no content-length: chunked upload
            raw = orjson.dumps(big)
            for i in range(0, len(raw), 8192):
                yield raw[i:i + 8192]

        chunked = http.post("/v1/messages", content=chunks(),
                            headers={"content-type": "application/json"})
        after = http.post("/v1/messages", json=message_body())
    for resp in (declared, chunked):
        assert resp.status_code == 413, resp.text
        data = resp.json()
        assert data["type"] == "error" and data["error"]["type"] == "request_too_large"
        assert "limit" in data["error"]["message"]
    assert after.status_code == 200
    assert len(chat_requests(fake)) == 1


def test_burst_of_bad_requests_then_a_good_one(make_gateway: Callable[..., str],
                                               fake: FakeOpenRouter) -> None:
    url = make_gateway(max_body_bytes=64 * 1024)
    raws = [raw for _, raw, _ in BAD_BODIES] * 3
    raws.append(orjson.dumps(message_body("y" * 100_000)))
    with httpx2.Client(base_url=url, timeout=20.0,
                       limits=httpx2.Limits(max_connections=16)) as http:
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(lambda raw: post_raw(http, raw).status_code, raws))
        assert sorted(set(statuses)) == [400, 413], statuses
        assert statuses.count(413) == 1
        assert not chat_requests(fake)
        good = http.post("/v1/messages", json=message_body("still alive?"))
        health = http.get("/health")
    assert good.status_code == 200, good.text
    assert good.json()["content"][0]["text"] == "Echo: still alive?"
    assert good.json()["model"] == MODEL
    assert health.status_code == 200


def test_wrong_method_and_unknown_path(http: httpx2.Client) -> None:
    wrong = http.get("/v1/messages")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    missing = http.post("/v1/nothing-here", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
