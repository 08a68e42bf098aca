"""Fidelity: Gemini tool-schema sanitizing, `safeguards`/`thread` fields, `max_tokens: 0`
pre-warm answers and thinking round trips for non-Anthropic models, via the SDK."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from conftest import MODEL, chat_requests, last_chat, message_body, parse_sse, user
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply

# ---------------------------------------------------------------- Gemini schemas

UNSUPPORTED = {"$schema", "exclusiveMinimum", "exclusiveMaximum", "const", "$ref", "$defs",
               "definitions", "propertyNames", "additionalProperties", "oneOf", "allOf"}

TOOL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "$defs": {"Mode": {"type": "string", "enum": ["fast", "slow"],
                       "description": "How hard to try"}},
    "properties": {
        "count": {"type": "integer", "exclusiveMinimum": 0, "description": "How many"},
        "kind": {"const": "file"},
        "mode": {"$ref": "#/$defs/Mode"},
        "label": {"type": ["string", "null"]},
        "tags": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"},
                 "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "weight": {"type": "number", "exclusiveMinimum": 0.5}}}},
    },
    "required": ["count", "kind"],
}
TOOL: dict[str, Any] = {"name": "configure", "description": "Configure the run",
                        "input_schema": TOOL_SCHEMA}


def schema_keywords(node: Any) -> Iterator[str]:
    """Every schema keyword used anywhere (property names themselves are not keywords)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    yield from schema_keywords(sub)
            elif key not in ("enum", "required", "default"):
                yield from schema_keywords(value)
    elif isinstance(node, list):
        for item in node:
            yield from schema_keywords(item)


def upstream_tool(fake: FakeOpenRouter) -> dict[str, Any]:
    tools = last_chat(fake)["tools"]
    assert len(tools) == 1
    return tools[0]["function"]


def test_gemini_tool_schema_is_sanitized(client: anthropic.Anthropic,
                                         fake: FakeOpenRouter) -> None:
    sent = copy.deepcopy(TOOL)
    message = client.messages.create(model="google/gemini-2.5-pro", max_tokens=256,
                                     messages=user("configure it"), tools=[sent])
    assert message.content
    assert sent == TOOL  # the client's object is untouched
    function = upstream_tool(fake)
    assert function["name"] == "configure"
    params = function["parameters"]
    used = set(schema_keywords(params))
    assert not used & UNSUPPORTED, used & UNSUPPORTED
    props = params["properties"]
    assert params["type"] == "object"
    assert params["required"] == ["count", "kind"]
    assert props["count"]["type"] == "integer"
    assert "exclusiveMinimum" in props["count"]["description"]
    assert "0" in props["count"]["description"]
    assert props["count"]["description"].startswith("How many")
    assert props["kind"]["enum"] == ["file"]
    assert props["mode"]["enum"] == ["fast", "slow"]  # $ref inlined
    assert props["mode"]["type"] == "string"
    assert props["label"]["type"] == "string" and props["label"]["nullable"] is True
    assert "propertyNames" in props["tags"]["description"]
    assert "^[a-z]+$" in props["tags"]["description"]
    weight = props["items"]["items"]["properties"]["weight"]
    assert "exclusiveMinimum" in weight["description"] and "0.5" in weight["description"]


def test_gemini_sanitizing_when_streaming(client: anthropic.Anthropic,
                                          fake: FakeOpenRouter) -> None:
    with client.messages.stream(model="google/gemini-2.5-pro", max_tokens=256,
                                messages=user("configure it"), tools=[TOOL]) as stream:
        stream.get_final_message()
    used = set(schema_keywords(upstream_tool(fake)["parameters"]))
    assert not used & UNSUPPORTED, used & UNSUPPORTED


def test_same_tool_to_openai_is_unchanged(client: anthropic.Anthropic,
                                          fake: FakeOpenRouter) -> None:
    client.messages.create(model="openai/gpt-4o", max_tokens=256,
                           messages=user("configure it"), tools=[TOOL])
    function = upstream_tool(fake)
    assert function["parameters"] == TOOL_SCHEMA
    assert function["description"] == "Configure the run"


# ---------------------------------------------------------------- safeguards / thread

def test_safeguards_is_a_400_naming_it(client: anthropic.Anthropic,
                                       fake: FakeOpenRouter) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**message_body(), extra_body={"safeguards": {"type": "auto"}})
    body = info.value.response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert "safeguards" in body["error"]["message"]
    assert not chat_requests(fake)


def test_thread_continue_is_404_thread_not_found(client: anthropic.Anthropic,
                                                 fake: FakeOpenRouter) -> None:
    thread = {"type": "continue", "previous_message_id": "msg_0123456789"}
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(**message_body(), extra_body={"thread": thread})
    body = info.value.response.json()
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["details"]["error_code"] == "thread_not_found"
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert not chat_requests(fake)


def test_thread_continue_when_streaming_is_404_before_the_stream(
    client: anthropic.Anthropic, fake: FakeOpenRouter
) -> None:
    thread = {"type": "continue", "previous_message_id": "msg_0123456789"}
    with pytest.raises(anthropic.NotFoundError) as info, client.messages.stream(
        **message_body(), extra_body={"thread": thread}
    ) as stream:
        stream.get_final_message()
    assert info.value.response.json()["error"]["details"]["error_code"] == "thread_not_found"


def test_thread_create_works_normally(client: anthropic.Anthropic,
                                      fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="threaded"))
    message = client.messages.create(**message_body(), extra_body={"thread": {"type": "create"}})
    assert [b.text for b in message.content if b.type == "text"] == ["threaded"]
    assert "thread" not in last_chat(fake)


# ---------------------------------------------------------------- max_tokens: 0

def test_max_tokens_zero_is_answered_locally(client: anthropic.Anthropic,
                                             fake: FakeOpenRouter) -> None:
    message = client.messages.create(model=MODEL, max_tokens=0,
                                     system="A long cached system prompt " * 20,
                                     messages=user("pre-warm the cache please"))
    assert message.stop_reason == "max_tokens"
    assert message.content == []
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 0
    assert message.model == MODEL
    assert not chat_requests(fake)


def test_max_tokens_zero_streaming_is_answered_locally(client: anthropic.Anthropic,
                                                       http: httpx2.Client,
                                                       fake: FakeOpenRouter) -> None:
    with client.messages.stream(model=MODEL, max_tokens=0,
                                messages=user("pre-warm the cache please")) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.stop_reason == "max_tokens"
    assert final.content == []
    assert final.usage.input_tokens > 0
    with http.stream("POST", "/v1/messages",
                     json={**message_body(), "max_tokens": 0, "stream": True}) as resp:
        raw = resp.read().decode()
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    names = [n for n, _ in parse_sse(raw)]
    assert names == ["message_start", "message_delta", "message_stop"]
    assert not chat_requests(fake)


# ---------------------------------------------------------------- thinking round trips

REASONING = "First I add the numbers, then I double check the sum."
ENCRYPTED = "gAAAAABencrypted-openai-reasoning-blob=="
OPENAI_DETAILS = [
    {"type": "reasoning.text", "text": REASONING, "format": "openai-responses-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": ENCRYPTED, "format": "openai-responses-v1",
     "index": 1},
]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


def first_turn(client: anthropic.Anthropic, model: str, stream: bool) -> Any:
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 4096, "thinking": THINKING,
                              "messages": user("What is 2 + 2?")}
    if stream:
        with client.messages.stream(**kwargs) as s:
            return s.get_final_message()
    return client.messages.create(**kwargs)


def second_turn(client: anthropic.Anthropic, model: str, first: Any) -> None:
    client.messages.create(model=model, max_tokens=4096, thinking=THINKING, messages=[
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                          for b in first.content]},
        {"role": "user", "content": "And doubled?"},
    ])


def replayed_assistant(fake: FakeOpenRouter) -> dict[str, Any]:
    messages = last_chat(fake)["messages"]
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert len(assistants) == 1, messages
    return assistants[0]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_openai_reasoning_details_round_trip(client: anthropic.Anthropic,
                                             fake: FakeOpenRouter, stream: bool) -> None:
    fake.script(Reply(text="4", reasoning=REASONING, reasoning_format="openai-responses-v1",
                      encrypted_reasoning=ENCRYPTED))
    first = first_turn(client, "openai/gpt-5", stream)
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "text"], kinds
    thinking = first.content[0]
    assert thinking.thinking == REASONING
    assert thinking.signature and ENCRYPTED not in thinking.signature  # opaque to clients
    assert last_chat(fake)["reasoning"] == {"max_tokens": 1024}
    second_turn(client, "openai/gpt-5", first)
    replay = replayed_assistant(fake)
    assert replay["content"] == "4"
    assert replay.get("reasoning_details") == OPENAI_DETAILS, replay


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_deepseek_reasoning_is_replayed_as_text(client: anthropic.Anthropic,
                                                fake: FakeOpenRouter, stream: bool) -> None:
    fake.script(Reply(text="4", reasoning=REASONING, reasoning_format="unknown"))
    first = first_turn(client, "deepseek/deepseek-r1", stream)
    assert [b.type for b in first.content] == ["thinking", "text"]
    assert first.content[0].thinking == REASONING
    second_turn(client, "deepseek/deepseek-r1", first)
    replay = replayed_assistant(fake)
    assert replay["content"] == "4"
    assert replay.get("reasoning") == REASONING, replay

