"""One recorded-style stream per upstream dialect that OpenRouter relays, translated and then
replayed as the next turn: what the client got back must reach the upstream unchanged."""

from __future__ import annotations

import json
from typing import Any

from chunks import (
    chunk,
    finish,
    happy,
    reasoning,
    role_chunk,
    run_stream,
    text,
    tool_args,
    tool_call,
    tool_start,
    usage_chunk,
)
from openrouter_anthropic.profiles import Profiles
from openrouter_anthropic.translate.request import RequestOptions, build_chat_request
from openrouter_anthropic.translate.tools import ToolNames

TOOLS = [
    {"name": "Read", "description": "read", "input_schema": {
        "type": "object", "properties": {"file_path": {"type": "string"}}}},
    {"name": "Bash", "description": "run", "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"}}}},
]


def replay(model: str, message: Any) -> dict[str, Any]:
    """The next request of the conversation, as an Anthropic client would send it."""
    content = [block.model_dump(exclude_none=True) for block in message.content]
    tool_ids = [b["id"] for b in content if b["type"] == "tool_use"]
    follow_up: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in tool_ids
    ] or [{"type": "text", "text": "go on"}]
    body = {"model": "x", "max_tokens": 1000, "tools": TOOLS, "messages": [
        {"role": "user", "content": "start"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": follow_up},
    ]}
    plan = build_chat_request(body, model, Profiles().get(model), RequestOptions())
    return plan.body


def names() -> ToolNames:
    out = ToolNames()
    for tool in TOOLS:
        out.add(tool["name"])
    return out


def test_openai_sequential_parallel_tools_with_cached_prompt() -> None:
    stream = [role_chunk(), *[text(p) for p in ("Let me ", "look.")],
              *tool_call(0, "call_a", "Read", '{"file_path": "/a.txt"}', pieces=5),
              *tool_call(1, "call_b", "Read", '{"file_path": "/b.txt"}', pieces=4),
              finish("tool_calls"), usage_chunk(prompt=2000, completion=30, cached=1536)]
    result = run_stream(stream, names=names())
    message = result.message
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert [b.input for b in message.content[1:]] == [{"file_path": "/a.txt"},
                                                      {"file_path": "/b.txt"}]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (464, 1536)
    upstream = replay("openai/gpt-4o", message)
    assistant, tool_a, tool_b = upstream["messages"][1:4]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert (tool_a["tool_call_id"], tool_b["tool_call_id"]) == ("call_a", "call_b")


def test_anthropic_signed_thinking_then_tool_call_round_trips() -> None:
    signature = "EqQBCkYIBxgCKkD-signature"
    thinking = [
        reasoning({"type": "reasoning.text", "text": "The user wants ", "format":
                   "anthropic-claude-v1", "index": 0}),
        reasoning({"type": "reasoning.text", "text": "a listing.", "format":
                   "anthropic-claude-v1", "index": 0}),
        reasoning({"type": "reasoning.text", "text": "", "signature": signature,
                   "format": "anthropic-claude-v1", "index": 0}),
    ]
    stream = happy(thinking, tool_call(0, "toolu_01", "Bash", '{"command": "ls"}', pieces=3),
                   reason="tool_calls", native="tool_use", prompt=900, cache_write=800)
    message = run_stream(stream, names=names()).message
    think, call = message.content
    assert (think.type, think.thinking, think.signature) == (
        "thinking", "The user wants a listing.", signature)
    assert call.input == {"command": "ls"}
    assert message.usage.cache_creation_input_tokens == 800
    assert message.usage.input_tokens == 100
    assistant = replay("anthropic/claude-sonnet-4", message)["messages"][1]
    assert assistant["reasoning_details"] == [{
        "type": "reasoning.text", "text": "The user wants a listing.",
        "signature": signature, "format": "anthropic-claude-v1", "index": 0}]
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"


def test_gemini_whole_tool_call_in_one_chunk_with_encrypted_reasoning() -> None:
    summary = {"type": "reasoning.text", "text": "**Planning** read the file",
               "format": "google-gemini-v1", "index": 0}
    encrypted = {"type": "reasoning.encrypted", "data": "CiQB0e2Kb-gemini-thought",
                 "format": "google-gemini-v1", "index": 1, "id": "tool_Read_xyz"}
    call_chunk = chunk({"role": "assistant", "content": None, "reasoning_details": [encrypted],
                        "tool_calls": [{"index": 0, "id": "tool_Read_xyz", "type": "function",
                                        "function": {"name": "Read",
                                                     "arguments": '{"file_path":"/c.txt"}'}}]})
    # Gemini reports finish "stop" even when it called a tool.
    stream = happy(reasoning(summary), call_chunk, reason="stop", native="STOP")
    message = run_stream(stream, names=names()).message
    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    assert message.content[1].input == {"file_path": "/c.txt"}
    assert message.stop_reason == "tool_use"
    assistant = replay("google/gemini-2.5-pro", message)["messages"][1]
    details = assistant["reasoning_details"]
    assert [d["type"] for d in details] == ["reasoning.text", "reasoning.encrypted"]
    assert details[1]["data"] == "CiQB0e2Kb-gemini-thought"
    assert details[1]["id"] == "tool_Read_xyz"


def test_deepseek_plain_reasoning_is_replayed_as_reasoning_text() -> None:
    stream = [role_chunk(),
              chunk({"role": "assistant", "content": "", "reasoning": "First, 2+2 "}),
              chunk({"role": "assistant", "content": "", "reasoning": "is 4."}),
              text("The answer is 4."), finish("stop"), usage_chunk(reasoning=6)]
    message = run_stream(stream).message
    think, answer = message.content
    assert think.thinking == "First, 2+2 is 4."
    assert answer.text == "The answer is 4."
    assert message.usage.output_tokens_details.thinking_tokens == 6
    assistant = replay("deepseek/deepseek-r1", message)["messages"][1]
    assert assistant["reasoning"] == "First, 2+2 is 4."
    # Plain text carries no provider state: nothing goes back as reasoning_details.
    assert "reasoning_details" not in assistant


def test_xai_style_arguments_arrive_whole_with_the_name() -> None:
    # xAI and Gemini send name and complete arguments together; nothing may be lost.
    stream = happy(tool_start(0, "call_x", "Bash", '{"command": "pwd"}'),
                   tool_args(0, ""), reason="tool_calls")
    result = run_stream(stream, names=names())
    deltas = [d["partial_json"] for d in result.deltas(0)]
    assert json.loads("".join(deltas)) == {"command": "pwd"}
    assert result.message.content[0].input == {"command": "pwd"}
