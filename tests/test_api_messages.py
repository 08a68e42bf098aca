"""POST /v1/messages and /v1/messages/count_tokens end to end: SDK -> gateway -> fake OpenRouter."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import httpx2
import pytest

from conftest import (
    CLIENT_KEY,
    MODEL,
    READ_TOOL,
    UPSTREAM_KEY,
    chat_requests,
    last_chat,
    message_body,
    parse_sse,
    user,
)
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, ToolCall

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


def create(client: anthropic.Anthropic, text: str = "hello", **extra: Any) -> Any:
    return client.messages.create(**message_body(text, **extra))


def stream_final(client: anthropic.Anthropic, text: str = "hello", **extra: Any
                 ) -> tuple[Any, list[Any]]:
    """The final message of a streamed answer, and every event the SDK yielded."""
    with client.messages.stream(**message_body(text, **extra)) as stream:
        events = list(stream)
        return stream.get_final_message(), events


# ---------------------------------------------------------------- non-streaming

def test_create_returns_text_model_alias_and_usage(client: anthropic.Anthropic,
                                                   fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="Hello from upstream",
                      usage={"prompt_tokens": 120, "completion_tokens": 9}))
    msg = create(client)
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert [(b.type, b.text) for b in msg.content] == [("text", "Hello from upstream")]
    assert msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 120
    assert msg.usage.output_tokens == 9
    assert msg.usage.cache_read_input_tokens == 0
    assert msg.usage.cache_creation_input_tokens == 0
    assert last_chat(fake)["model"] == "anthropic/claude-sonnet-4"


@pytest.mark.parametrize(("alias", "slug"), [("big", "anthropic/claude-sonnet-4"),
                                             ("small", "anthropic/claude-3.7-sonnet")])
def test_alias_is_echoed_and_routed(client: anthropic.Anthropic, fake: FakeOpenRouter,
                                    alias: str, slug: str) -> None:
    msg = create(client, model=alias)
    assert msg.model == alias
    assert last_chat(fake)["model"] == slug


CACHE_USAGE = {"prompt_tokens": 1000, "completion_tokens": 5, "cached_tokens": 600,
               "cache_write_tokens": 300}


def test_cache_usage_mapping(client: anthropic.Anthropic, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="cached", usage=CACHE_USAGE))
    usage = create(client).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens, usage.output_tokens) == (100, 600, 300, 5)


def test_cache_usage_mapping_streaming(client: anthropic.Anthropic,
                                       fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="cached", usage=CACHE_USAGE))
    usage = stream_final(client)[0].usage
    assert (usage.input_tokens, usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens, usage.output_tokens) == (100, 600, 300, 5)


# ---------------------------------------------------------------- streaming via the SDK

def test_stream_text(client: anthropic.Anthropic, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="Streaming works across several small chunks.",
                      usage={"prompt_tokens": 50, "completion_tokens": 8}))
    with client.messages.stream(**message_body()) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == "Streaming works across several small chunks."
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "Streaming works across several small chunks."
    assert final.model == MODEL and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (50, 8)


def test_stream_two_parallel_tool_calls_with_split_arguments(client: anthropic.Anthropic,
                                                             fake: FakeOpenRouter) -> None:
    calls = [ToolCall(id="call_a1", name="Read",
                      arguments='{"file_path": "/tmp/project/alpha.txt", "limit": 20}'),
             ToolCall(id="call_b2", name="Read",
                      arguments='{"file_path": "/tmp/project/beta.txt", "limit": 40}')]
    fake.script(Reply(tool_calls=calls))
    final, events = stream_final(client, "read alpha.txt and beta.txt", tools=[READ_TOOL])
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name, b.input) for b in final.content] == [
        ("tool_use", "call_a1", "Read", {"file_path": "/tmp/project/alpha.txt", "limit": 20}),
        ("tool_use", "call_b2", "Read", {"file_path": "/tmp/project/beta.txt", "limit": 40}),
    ]
    json_deltas = [e for e in events if e.type == "content_block_delta"
                   and e.delta.type == "input_json_delta" and e.delta.partial_json]
    for index in (0, 1):  # the arguments arrived in several fragments per call
        assert sum(1 for e in json_deltas if e.index == index) >= 3
    assert last_chat(fake)["tools"][0]["function"]["name"] == "Read"


def test_stream_thinking_with_signature(client: anthropic.Anthropic,
                                        fake: FakeOpenRouter) -> None:
    reply = Reply(reasoning="First I consider the question. Then I answer it.",
                  text="The answer is 42.")
    fake.script(reply)
    final, _ = stream_final(client, "what is the answer", max_tokens=4096,
                            thinking={"type": "enabled", "budget_tokens": 2048})
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == reply.reasoning
    assert final.content[0].signature == reply.signature()
    assert final.content[1].text == "The answer is 42."
    assert last_chat(fake)["reasoning"] == {"max_tokens": 2048}


# ---------------------------------------------------------------- tool round trip

def test_tool_round_trip(client: anthropic.Anthropic, fake: FakeOpenRouter) -> None:
    question = "please read a.txt and b.txt"
    first = create(client, question, tools=[READ_TOOL])
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["Read", "Read"]
    results = [{"type": "tool_result", "tool_use_id": u.id, "content": f"contents {i}"}
               for i, u in enumerate(uses)]
    messages = [*user(question),
                {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                  for b in first.content]},
                {"role": "user", "content": [{"type": "text", "text": "summarize them"},
                                             *results]}]
    second = client.messages.create(model=MODEL, max_tokens=256, tools=[READ_TOOL],
                                    messages=messages)
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"] and second.content[0].text

    sent = chat_requests(fake)[1]["messages"]
    roles = [m["role"] for m in sent]
    at = roles.index("assistant")
    assert [c["id"] for c in sent[at]["tool_calls"]] == [u.id for u in uses]
    # Tool results come right after the assistant turn, before the user's other content.
    assert roles[at + 1:] == ["tool", "tool", "user"]
    assert [m["tool_call_id"] for m in sent[at + 1:at + 3]] == [u.id for u in uses]
    assert "contents 0" in str(sent[at + 1]["content"])
    assert "summarize them" in str(sent[at + 3]["content"])


# ---------------------------------------------------------------- request translation

def test_base64_image_reaches_upstream_as_data_url(client: anthropic.Anthropic,
                                                   fake: FakeOpenRouter) -> None:
    content = [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                            "data": PNG}},
               {"type": "text", "text": "what is in this picture?"}]
    client.messages.create(model=MODEL, max_tokens=64,
                           messages=[{"role": "user", "content": content}])
    parts = last_chat(fake)["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in [
        {k: v for k, v in p.items() if k in ("type", "image_url")} for p in parts]
    assert any(p.get("text") == "what is in this picture?" for p in parts)


def test_temperature_zero_and_user_id_reach_upstream(http: httpx2.Client,
                                                     fake: FakeOpenRouter) -> None:
    # SDK 2.x dropped temperature (API 2026-10-21); Claude Code still sends it on 2023-06-01.
    resp = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                     json=message_body(temperature=0, metadata={"user_id": "user-1234"}))
    assert resp.status_code == 200, resp.text
    body = last_chat(fake)
    assert "temperature" in body and body["temperature"] == 0
    assert body["user"] == "user-1234"


def test_upstream_auth_attribution_and_session_headers(make_client: Any,
                                                       fake: FakeOpenRouter) -> None:
    with make_client(default_headers={"X-Claude-Code-Session-Id": "sess-42"}) as sdk:
        create(sdk)
    recorded = [r for r in fake.requests if r.path.endswith("/chat/completions")][-1]
    assert recorded.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(CLIENT_KEY not in value for value in recorded.headers.values())
    assert "x-api-key" not in recorded.headers
    assert recorded.headers.get("http-referer")
    assert recorded.headers.get("x-title")
    assert recorded.body["session_id"] == "sess-42"


# ---------------------------------------------------------------- count_tokens

def count(client: anthropic.Anthropic, text: str, **extra: Any) -> int:
    result = client.messages.count_tokens(model=MODEL, messages=user(text), **extra)
    assert isinstance(result.input_tokens, int)
    return result.input_tokens


def test_count_tokens_grows_with_content_and_tools(client: anthropic.Anthropic) -> None:
    short = count(client, "hi")
    longer = count(client, "hi " + "the quick brown fox jumps over the lazy dog " * 40)
    with_tools = count(client, "hi", tools=[READ_TOOL])
    assert short > 0
    assert longer > short + 100
    assert with_tools > short


# ---------------------------------------------------------------- headers, versions, betas

def test_claude_code_style_request_headers(http: httpx2.Client, fake: FakeOpenRouter) -> None:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,totally-unknown-beta-2099-01-01",
               "x-app": "cli", "x-stainless-retry-count": "0"}
    resp = http.post("/v1/messages?beta=true&unknown_param=1", json=message_body(),
                     headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "message"
    assert resp.headers["request-id"].startswith("req_")
    assert chat_requests(fake)


def test_sdk_with_unknown_beta_header(make_client: Any) -> None:
    with make_client(default_headers={"anthropic-beta": "made-up-beta-2030-01-01"}) as sdk:
        assert create(sdk).content[0].type == "text"


def test_count_tokens_with_beta_query(http: httpx2.Client) -> None:
    resp = http.post("/v1/messages/count_tokens?beta=true",
                     json={"model": MODEL, "messages": user("foo")},
                     headers={"anthropic-version": "2023-06-01", "x-api-key": CLIENT_KEY})
    assert resp.status_code == 200, resp.text
    assert resp.json()["input_tokens"] > 0


async def test_async_client_create(async_client: anthropic.AsyncAnthropic,
                                   fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="async hello"))
    msg = await async_client.messages.create(**message_body())
    assert msg.content[0].text == "async hello"


# ---------------------------------------------------------------- raw SSE framing

def test_raw_sse_framing(http: httpx2.Client, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="one two three"))
    with http.stream("POST", "/v1/messages", json=message_body(stream=True),
                     headers={"anthropic-version": "2023-06-01"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"].startswith("req_")
        raw = resp.read().decode()
    assert "[DONE]" not in raw
    assert ": OPENROUTER" not in raw
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert None not in names, "every event needs an event: line"
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert "ping" in names  # from the fake's `: OPENROUTER PROCESSING` comment
    assert all(data.get("type") == name for name, data in events)
    text = "".join(d["delta"]["text"] for n, d in events
                   if n == "content_block_delta" and d["delta"]["type"] == "text_delta")
    assert text == "one two three"
