"""Tests for the fake OpenRouter upstream: wire format, scripting, faults and default rules."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from openrouter_anthropic.fake_upstream import (
    FakeOpenRouter,
    Reply,
    ToolCall,
    default_reply,
    example_for_schema,
    main,
    running_fake,
)

CLAUDE_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                for n in ("Write", "Bash", "Read")]
SYSTEM = {"role": "system", "content": "<env>\nWorking directory: /home/u/proj\n</env>"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    server = FakeOpenRouter()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(text: str | list[Any] = "hello there", stream: bool = False,
              **extra: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o", "stream": stream,
            "messages": [SYSTEM, {"role": "user", "content": text}], **extra}


async def stream_events(http: aiohttp.ClientSession, url: str, body: dict[str, Any]
                        ) -> tuple[str, list[str]]:
    """Raw body text and its SSE events (comments and data payloads, in order)."""
    async with http.post(f"{url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.text()
    return raw, [e for e in raw.split("\n\n") if e]


def data_chunks(events: list[str]) -> list[dict[str, Any]]:
    payloads = [e.removeprefix("data: ") for e in events if e.startswith("data: ")]
    return [json.loads(p) for p in payloads if p != "[DONE]"]


def assemble_tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for frag in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(frag["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] = frag.get("id", call["id"])
                call["name"] = frag.get("function", {}).get("name", call["name"])
                call["arguments"] += frag["function"]["arguments"]
    return calls


async def test_streamed_text_wire_format(fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(text="The quick brown fox jumps over the lazy dog."))
    raw, events = await stream_events(http, fake.base_url, chat_body(stream=True))
    assert raw.startswith(": OPENROUTER PROCESSING\n\ndata: {")
    assert events[-1] == "data: [DONE]"
    chunks = data_chunks(events)
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("gen-")
    assert first["provider"] == "FakeProvider" and first["model"] == "openai/gpt-4o"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text_chunks = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    assert len(text_chunks) > 3
    text = "".join(c["choices"][0]["delta"]["content"] for c in text_chunks)
    assert text == "The quick brown fox jumps over the lazy dog."
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "stop"
    assert finish["native_finish_reason"] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["is_byok"] is False
    assert set(usage["prompt_tokens_details"]) == {"cached_tokens", "cache_write_tokens"}
    assert "reasoning_tokens" in usage["completion_tokens_details"]


async def test_fixed_chunk_count() -> None:
    server = FakeOpenRouter(chunks=4)
    await server.start()
    server.script(Reply(text="abcdefghijklmnop"))
    try:
        async with aiohttp.ClientSession() as http:
            _, events = await stream_events(http, server.base_url, chat_body(stream=True))
    finally:
        await server.stop()
    contents = [c["choices"][0]["delta"].get("content") for c in data_chunks(events)
                if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert contents == ["abcd", "efgh", "ijkl", "mnop"]


async def test_tool_arguments_split_and_reassemble(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    args = {"file_path": "/tmp/some file.txt", "content": "line one\nline \"two\" ünïcode"}
    fake.script(Reply(tool_calls=[ToolCall(id="call_1", name="Write",
                                           arguments=json.dumps(args))]))
    _, events = await stream_events(http, fake.base_url, chat_body(stream=True))
    chunks = data_chunks(events)
    frags = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert frags[0] == {"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "Write", "arguments": ""}}
    assert len(frags) >= 4
    assert all(set(f) == {"index", "function"} for f in frags[1:])
    calls = assemble_tool_calls(chunks)
    assert json.loads(calls[0]["arguments"]) == args
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_scripted_429_with_retry_after(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(status=429, retry_after=7))
    async with http.post(f"{fake.base_url}/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "7"
        body = await r.json()
    assert body["error"]["code"] == 429 and body["error"]["message"]
    assert "metadata" in body["error"]


async def test_midstream_error(fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(text="one two three four five six",
                      midstream_error={"code": 502, "message": "boom", "error_type": "overloaded"}))
    _, events = await stream_events(http, fake.base_url, chat_body(stream=True))
    assert events[-1] != "data: [DONE]"
    chunks = data_chunks(events)
    assert any(c["choices"][0]["delta"].get("content") for c in chunks[1:-1])
    last = chunks[-1]
    assert last["error"]["code"] == 502 and last["error"]["message"] == "boom"
    assert last["choices"][0]["finish_reason"] == "error"


async def test_eof_without_finish_and_garbage(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(text="a b c d e f", eof_without_finish=True), Reply(text="hi", garbage=True))
    _, events = await stream_events(http, fake.base_url, chat_body(stream=True))
    chunks = data_chunks(events)
    assert "data: [DONE]" not in events
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    _, events = await stream_events(http, fake.base_url, chat_body(stream=True))
    assert "data: {this is not json" in events


async def test_non_streaming_shape_with_reasoning(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(text="hi", reasoning="because", encrypted_reasoning="ENC",
                      usage={"cached_tokens": 5, "cost": 0.5}))
    async with http.post(f"{fake.base_url}/chat/completions", json=chat_body()) as r:
        body = await r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] == "hi" and msg["reasoning"] == "because"
    text_detail, enc_detail = msg["reasoning_details"]
    assert text_detail["type"] == "reasoning.text" and text_detail["signature"]
    assert enc_detail == {"type": "reasoning.encrypted", "data": "ENC",
                          "format": "anthropic-claude-v1", "index": 1}
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
    assert body["usage"]["cost"] == 0.5


async def test_error_in_200(fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(error_in_200=True, error_message="upstream died"))
    async with http.post(f"{fake.base_url}/chat/completions", json=chat_body()) as r:
        assert r.status == 200
        choice = (await r.json())["choices"][0]
    assert choice["finish_reason"] == "error"
    assert choice["error"]["message"] == "upstream died"


async def test_streamed_reasoning_with_signature(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    body = chat_body("think about caching", stream=True)
    _, events = await stream_events(http, fake.base_url, body)
    deltas = [c["choices"][0]["delta"] for c in data_chunks(events) if c["choices"]]
    pieces = [d for d in deltas if d.get("reasoning")]
    assert len(pieces) > 3
    assert all(d["reasoning_details"][0]["type"] == "reasoning.text" for d in pieces)
    assert "".join(d["reasoning"] for d in pieces).startswith("Let me think about caching")
    signed = [d for d in deltas if any("signature" in x for x in d.get("reasoning_details", []))]
    assert len(signed) == 1 and signed[0]["reasoning_details"][0]["text"] == ""
    assert deltas.index(signed[0]) > deltas.index(pieces[-1])
    assert "".join(d.get("content") or "" for d in deltas).startswith("After thinking")


def test_default_rules() -> None:
    def calls(text: str, tools: list[Any] = CLAUDE_TOOLS) -> list[tuple[str, Any]]:
        reply = default_reply(chat_body(text, tools=tools))
        return [(c["name"], json.loads(c["arguments"])) for c in reply.tool_calls]

    assert calls("Create a file notes.txt containing hello world") == [
        ("Write", {"file_path": "/home/u/proj/notes.txt", "content": "hello world"})]
    assert calls("run the command ls -la") == [
        ("Bash", {"command": "ls -la", "description": "Run a command"})]
    assert calls("Read a.py and /etc/b.py") == [
        ("Read", {"file_path": "/home/u/proj/a.py"}), ("Read", {"file_path": "/etc/b.py"})]
    assert calls("run ls", tools=[]) == []
    assert default_reply(chat_body("run ls")).text == "Echo: run ls"
    reminder = [{"type": "text", "text": "<system-reminder>run rm</system-reminder>"},
                {"type": "text", "text": "just chatting"}]
    assert default_reply(chat_body(reminder, tools=CLAUDE_TOOLS)).text == "Echo: just chatting"
    after_tool = chat_body("x")
    after_tool["messages"] += [{"role": "assistant", "content": None},
                               {"role": "tool", "tool_call_id": "1", "content": "out1"},
                               {"role": "tool", "tool_call_id": "2", "content": "out2"}]
    assert default_reply(after_tool).text == "Done. Tool output: out1\nout2"


def test_structured_output_default() -> None:
    schema = {"type": "object", "required": ["name", "age", "tags", "ok", "inner"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                             "tags": {"type": "array"}, "ok": {"type": "boolean"},
                             "inner": {"$ref": "#/$defs/In"}, "skip": {"type": "string"}},
              "$defs": {"In": {"type": "object", "required": ["k"],
                               "properties": {"k": {"type": ["null", "number"]}}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    reply = default_reply(chat_body(response_format=fmt))
    assert json.loads(reply.text or "") == example_for_schema(schema) == {
        "name": "x", "age": 1, "tags": [], "ok": True, "inner": {"k": 1}}


async def test_parallel_reads_streamed(fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    body = chat_body("read one.txt and two.txt", stream=True, tools=CLAUDE_TOOLS)
    _, events = await stream_events(http, fake.base_url, body)
    calls = assemble_tool_calls(data_chunks(events))
    assert sorted(calls) == [0, 1]
    assert [json.loads(calls[i]["arguments"])["file_path"] for i in (0, 1)] == [
        "/home/u/proj/one.txt", "/home/u/proj/two.txt"]
    assert calls[0]["id"] != calls[1]["id"]


async def test_control_endpoints(fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    root = fake.base_url.removesuffix("/api/v1")
    script = [{"text": "scripted"}, {"tool_calls": [{"name": "Bash", "arguments": {"a": 1}}]}]
    async with http.post(f"{root}/_fake/script", json=script) as r:
        assert (await r.json())["queued"] == 2
    async with http.post(f"{root}/_fake/script", json=[{"bogus": 1}]) as r:
        assert r.status == 400
    headers = {"Authorization": "Bearer sk-test", "X-Title": "t"}
    async with http.post(f"{fake.base_url}/chat/completions", json=chat_body(),
                         headers=headers) as r:
        assert (await r.json())["choices"][0]["message"]["content"] == "scripted"
    async with http.post(f"{fake.base_url}/chat/completions", json=chat_body()) as r:
        message = (await r.json())["choices"][0]["message"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    async with http.get(f"{fake.base_url}/models") as r:
        models = (await r.json())["data"]
    assert {"anthropic/claude-sonnet-4", "x-ai/grok-4"} <= {m["id"] for m in models}
    assert all(isinstance(m["top_provider"]["max_completion_tokens"], int) for m in models)
    async with http.get(f"{root}/_fake/requests") as r:
        records = await r.json()
    assert [rec["path"] for rec in records] == [
        "/api/v1/chat/completions", "/api/v1/chat/completions", "/api/v1/models"]
    assert records[0]["headers"]["authorization"] == "Bearer sk-test"
    assert records[0]["body"]["messages"][1]["content"] == "hello there"
    assert fake.requests[0].body == records[0]["body"]
    async with http.delete(f"{root}/_fake/requests") as r:
        assert r.status == 200
    assert fake.requests == []


async def test_hang_and_client_disconnect_is_counted(
        fake: FakeOpenRouter, http: aiohttp.ClientSession) -> None:
    fake.script(Reply(hang=True))
    with pytest.raises(asyncio.TimeoutError):
        await http.post(f"{fake.base_url}/chat/completions", json=chat_body(),
                        timeout=aiohttp.ClientTimeout(total=0.3))
    for _ in range(50):
        if fake.disconnects:
            break
        await asyncio.sleep(0.02)
    root = fake.base_url.removesuffix("/api/v1")
    async with http.get(f"{root}/_fake/stats") as r:
        stats = await r.json()
    assert stats["disconnects"] == 1
    assert stats["connections_opened"] >= 2 and stats["connections_closed"] >= 1
    assert stats["requests_in_flight"] == 0


async def test_first_byte_delay_sends_keepalive_comments(http: aiohttp.ClientSession) -> None:
    server = FakeOpenRouter(first_byte_delay=1.2)
    await server.start()
    try:
        _, events = await stream_events(http, server.base_url, chat_body(stream=True))
    finally:
        await server.stop()
    assert events[:2] == [": OPENROUTER PROCESSING"] * 2
    assert events[2].startswith("data: ")


def test_running_fake_in_thread() -> None:
    with running_fake(base_path="/v1") as fake:
        assert fake.base_url.endswith("/v1")
        request = urllib.request.Request(
            f"{fake.base_url}/chat/completions", data=json.dumps(chat_body("ping")).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = json.loads(resp.read())
    assert body["choices"][0]["message"]["content"] == "Echo: ping"


def test_main_rejects_bad_args() -> None:
    with pytest.raises(SystemExit):
        main(["--port", "not-a-number"])


async def test_client_hangup_mid_stream_is_counted(http: aiohttp.ClientSession) -> None:
    server = FakeOpenRouter(chunk_gap=0.05)
    await server.start()
    server.script(Reply(text="word " * 100))
    try:
        resp = await http.post(f"{server.base_url}/chat/completions", json=chat_body(stream=True))
        await resp.content.readuntil(b"\n\n")
        resp.close()  # drops the connection, like a gateway cancelling its upstream call
        for _ in range(100):
            if server.disconnects:
                break
            await asyncio.sleep(0.02)
        assert server.stats()["disconnects"] == 1
        assert server.stats()["requests_in_flight"] == 0
    finally:
        await server.stop()
