"""Helpers for the server-tool API tests: scripted tool calls, a gateway with server tools
on, raw streamed requests."""

from __future__ import annotations

import itertools
from typing import Any

import httpx2
import orjson

from conftest import CLIENT_KEY, MODEL, parse_sse
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, ToolCall

WEB_FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
_ids = itertools.count(1)


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=orjson.dumps(arguments).decode())


def calls(*tool_calls: ToolCall, **reply: Any) -> Reply:
    return Reply(tool_calls=list(tool_calls), **reply)


def body(text: str, tools: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 512, "messages": [{"role": "user", "content": text}],
            "tools": tools, **extra}


def post(base_url: str, request: dict[str, Any]) -> httpx2.Response:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    return httpx2.post(f"{base_url}/v1/messages", json=request, headers=headers, timeout=20.0)


def stream_events(base_url: str, request: dict[str, Any]) -> list[tuple[str | None, Any]]:
    response = post(base_url, {**request, "stream": True})
    assert response.status_code == 200, response.text
    return parse_sse(response.text)


def tool_messages(fake: FakeOpenRouter, request_index: int = -1) -> list[dict[str, Any]]:
    """The `tool` messages of one upstream chat request."""
    chats = [r.body for r in fake.requests if r.path.endswith("/chat/completions")]
    return [m for m in chats[request_index]["messages"] if m["role"] == "tool"]


def chat_bodies(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path.endswith("/chat/completions")]


def check_event_order(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """Anthropic's event grammar for one message; returns the blocks as started."""
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_stop") == 1 and names.count("message_delta") == 1
    started: list[dict[str, Any]] = []
    open_index: int | None = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(started)
            open_index = data["index"]
            started.append(data["content_block"])
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    return started
