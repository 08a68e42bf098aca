"""chat_to_message: OpenRouter chat completion (non-streaming) -> Anthropic message."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from anthropic.types import Message

from openrouter_anthropic.errors import UpstreamError
from openrouter_anthropic.profiles import Profiles
from openrouter_anthropic.translate.common import unseal_reasoning
from openrouter_anthropic.translate.request import build_chat_request
from openrouter_anthropic.translate.response import chat_to_message
from openrouter_anthropic.translate.tools import ToolNames

JSON = dict[str, Any]
ARGS = '{"command": "ls -la", "timeout": 30}'
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def completion(message: JSON | None = None, finish_reason: str | None = "stop",
               native: str | None = None, usage: JSON | None = None, **extra: Any) -> JSON:
    """A recorded-style OpenRouter chat.completion body."""
    msg: JSON = {"role": "assistant", "content": "", "refusal": None, "reasoning": None}
    msg.update(message or {})
    body: JSON = {
        "id": "gen-1761234567-AbCdEfGhIjKlMnOpQrSt",
        "provider": "Anthropic",
        "model": "anthropic/claude-sonnet-4.5",
        "object": "chat.completion",
        "created": 1761234567,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": finish_reason,
                     "native_finish_reason": native or finish_reason, "message": msg}],
        "usage": usage if usage is not None else {
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }
    body.update(extra)
    return body


def call(call_id: str, name: str, arguments: Any) -> JSON:
    return {"id": call_id, "type": "function", "index": 0,
            "function": {"name": name, "arguments": arguments}}


def convert(body: JSON, names: ToolNames | None = None, **kwargs: Any) -> JSON:
    message = chat_to_message(body, "claude-sonnet-4-5", names or ToolNames(), **kwargs)
    Message.model_validate(message)  # the SDK's own type accepts it
    json.dumps(message)
    return message


# ------------------------------------------------------------------------------ text


def test_text_message() -> None:
    m = convert(completion({"content": "Hello, wörld 🎉"}))
    assert m["type"] == "message" and m["role"] == "assistant"
    assert m["model"] == "claude-sonnet-4-5"
    assert m["content"] == [{"type": "text", "text": "Hello, wörld 🎉"}]
    assert m["stop_reason"] == "end_turn"
    assert m["stop_sequence"] is None
    assert m["id"].startswith("msg_")


def test_empty_and_null_content_give_no_text_block() -> None:
    assert convert(completion({"content": None}))["content"] == []
    assert convert(completion({"content": ""}))["content"] == []


def test_content_parts_joined() -> None:
    m = convert(completion({"content": [{"type": "text", "text": "a"},
                                        {"type": "text", "text": "b"}]}))
    assert m["content"] == [{"type": "text", "text": "ab"}]


# ------------------------------------------------------------------------ tool calls


def test_tool_calls() -> None:
    m = convert(completion({"content": "Let me check.",
                            "tool_calls": [call("call_1", "Bash", ARGS),
                                           call("call_2", "Read", '{"file_path": "/x"}')]},
                           "tool_calls"))
    assert m["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "Bash", "input": json.loads(ARGS)},
        {"type": "tool_use", "id": "call_2", "name": "Read", "input": {"file_path": "/x"}},
    ]
    assert m["stop_reason"] == "tool_use"


@pytest.mark.parametrize("raw", ["tool_0_Read__thought__CiQB+/x==", "call.1:2", "a b"])
def test_tool_call_id_sanitised(raw: str) -> None:
    m = convert(completion({"tool_calls": [call(raw, "Read", "{}")]}, "tool_calls"))
    assert TOOL_ID.match(m["content"][0]["id"])


def test_tool_call_name_mapped_back() -> None:
    long_name = "mcp__claude_ai_Very_Long_Server_Name__search_issues_and_pull_requests_everywhere"
    plan = build_chat_request(
        {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
         "tools": [{"name": long_name, "input_schema": {"type": "object"}}]},
        "openai/gpt-4o", Profiles().get("openai/gpt-4o"))
    upstream = plan.body["tools"][0]["function"]["name"]
    m = convert(completion({"tool_calls": [call("c1", upstream, "{}")]}, "tool_calls"),
                plan.names)
    assert m["content"][0]["name"] == long_name


@pytest.mark.parametrize("arguments", ["", None, "  "])
def test_empty_arguments_give_empty_input(arguments: Any) -> None:
    m = convert(completion({"tool_calls": [call("c1", "Now", arguments)]}, "tool_calls"))
    assert m["content"][0]["input"] == {}


def test_object_arguments_accepted() -> None:
    m = convert(completion({"tool_calls": [call("c1", "Read", {"file_path": "/x"})]},
                           "tool_calls"))
    assert m["content"][0]["input"] == {"file_path": "/x"}


@pytest.mark.parametrize("bad", ['{"command": "ls"', "not json", "[1, 2]"])
def test_invalid_arguments_reported_in_input(bad: str) -> None:
    m = convert(completion({"tool_calls": [call("c1", "Bash", bad)]}, "tool_calls"))
    block = m["content"][0]
    assert block["type"] == "tool_use" and block["name"] == "Bash"
    assert isinstance(block["input"], dict)
    assert bad in json.dumps(block["input"]) or bad in block["input"].values()


def test_stop_with_tool_calls_is_tool_use() -> None:
    m = convert(completion({"tool_calls": [call("c1", "Read", "{}")]}, "stop"))
    assert m["stop_reason"] == "tool_use"


# ------------------------------------------------------------------------- reasoning


def test_anthropic_reasoning_details_first() -> None:
    details = [
        {"type": "reasoning.text", "text": "Thinking...", "signature": "sig-1",
         "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "ENC==", "format": "anthropic-claude-v1",
         "index": 1},
    ]
    m = convert(completion({"content": "Answer", "reasoning": "Thinking...",
                            "reasoning_details": details,
                            "tool_calls": [call("c1", "Read", "{}")]}, "tool_calls"))
    assert m["content"][:3] == [
        {"type": "thinking", "thinking": "Thinking...", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "ENC=="},
        {"type": "text", "text": "Answer"},
    ]
    assert m["content"][3]["type"] == "tool_use"


def test_omit_thinking_keeps_signature() -> None:
    details = [{"type": "reasoning.text", "text": "secret", "signature": "sig-1",
                "format": "anthropic-claude-v1", "index": 0}]
    m = convert(completion({"content": "A", "reasoning_details": details}), omit_thinking=True)
    assert m["content"][0] == {"type": "thinking", "thinking": "", "signature": "sig-1"}


def test_foreign_reasoning_sealed_in_signature() -> None:
    details = [
        {"type": "reasoning.summary", "summary": "Plan.", "format": "openai-responses-v1",
         "index": 0},
        {"type": "reasoning.encrypted", "data": "gAAAA==", "id": "rs_1",
         "format": "openai-responses-v1", "index": 1},
    ]
    m = convert(completion({"content": "A", "reasoning_details": details}))
    block = m["content"][0]
    assert block["type"] == "thinking" and block["thinking"] == "Plan."
    assert unseal_reasoning(block["signature"]) == details


def test_plain_reasoning_string_becomes_thinking() -> None:
    m = convert(completion({"content": "A", "reasoning": "Let me see."}))
    assert m["content"][0]["type"] == "thinking"
    assert m["content"][0]["thinking"] == "Let me see."
    assert m["content"][1] == {"type": "text", "text": "A"}


# ---------------------------------------------------------------------------- usage


def test_usage_mapping() -> None:
    usage = {"prompt_tokens": 10_000, "completion_tokens": 300, "total_tokens": 10_300,
             "prompt_tokens_details": {"cached_tokens": 8_000, "cache_write_tokens": 1_500},
             "completion_tokens_details": {"reasoning_tokens": 120}, "cost": 0.01}
    m = convert(completion({"content": "A"}, usage=usage))
    assert m["usage"]["input_tokens"] == 500
    assert m["usage"]["cache_read_input_tokens"] == 8_000
    assert m["usage"]["cache_creation_input_tokens"] == 1_500
    assert m["usage"]["output_tokens"] == 300


def test_usage_without_details() -> None:
    m = convert(completion({"content": "A"}, usage={"prompt_tokens": 7,
                                                    "completion_tokens": 3}))
    assert (m["usage"]["input_tokens"], m["usage"]["output_tokens"]) == (7, 3)
    assert m["usage"]["cache_read_input_tokens"] == 0
    assert m["usage"]["cache_creation_input_tokens"] == 0


def test_web_search_requests_counted() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3,
             "server_tool_use": {"web_search_requests": 2}}
    m = convert(completion({"content": "A"}, usage=usage))
    assert m["usage"]["server_tool_use"]["web_search_requests"] == 2


# --------------------------------------------------------------------- stop reasons


@pytest.mark.parametrize(("finish", "native", "expected"), [
    ("stop", "stop", "end_turn"),
    ("stop", "end_turn", "end_turn"),
    ("length", "length", "max_tokens"),
    ("length", "model_context_window_exceeded", "model_context_window_exceeded"),
    ("content_filter", "content_filter", "refusal"),
    ("stop", "refusal", "refusal"),
    ("tool_calls", "tool_use", "tool_use"),
])
def test_stop_reasons(finish: str, native: str, expected: str) -> None:
    calls = [call("c1", "Read", "{}")] if finish == "tool_calls" else None
    m = convert(completion({"content": "x", "tool_calls": calls}, finish, native))
    assert m["stop_reason"] == expected


def test_stop_sequence_named_when_only_one_given() -> None:
    body = completion({"content": "1 2 3"}, "stop", "stop_sequence")
    assert convert(body, stop_sequences=["###"])["stop_sequence"] == "###"
    assert convert(body, stop_sequences=["###", "END"])["stop_sequence"] is None
    assert convert(body, stop_sequences=["###"])["stop_reason"] == "stop_sequence"


def test_refusal_field() -> None:
    m = convert(completion({"content": None, "refusal": "I can't help with that."}))
    assert m["stop_reason"] == "refusal"
    assert m["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert m["stop_details"] == {"type": "refusal"}


def test_content_filter_has_stop_details() -> None:
    m = convert(completion({"content": ""}, "content_filter"))
    assert m["stop_reason"] == "refusal"
    assert m["stop_details"] == {"type": "refusal"}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("code", "status", "error_type"), [
    (429, 429, "rate_limit_error"),
    (502, 529, "overloaded_error"),
    (503, 529, "overloaded_error"),
    (400, 400, "invalid_request_error"),
    (500, 500, "api_error"),
])
def test_error_inside_200_body_in_choice(code: int, status: int, error_type: str) -> None:
    body = completion({"content": "partial"}, "error")
    body["choices"][0]["error"] = {"code": code, "message": "Provider returned error"}
    with pytest.raises(UpstreamError) as info:
        chat_to_message(body, "claude", ToolNames())
    assert info.value.status == status
    assert info.value.error_type == error_type
    assert "Provider returned error" in info.value.message


def test_top_level_error_inside_200_body() -> None:
    body = {"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-min"},
            "user_id": "user_1"}
    with pytest.raises(UpstreamError) as info:
        chat_to_message(body, "claude", ToolNames())
    assert info.value.status == 429 and info.value.error_type == "rate_limit_error"


def test_finish_error_without_error_object_still_raises() -> None:
    with pytest.raises(UpstreamError):
        chat_to_message(completion({"content": "partial"}, "error"), "claude", ToolNames())
