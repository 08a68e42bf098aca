"""build_chat_request: Anthropic Messages request -> OpenRouter Chat Completions body."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from openrouter_anthropic.errors import InvalidRequest
from openrouter_anthropic.profiles import Profiles
from openrouter_anthropic.translate.request import ChatPlan, RequestOptions, build_chat_request

OPENAI = "openai/gpt-4o"
ANTHROPIC = "anthropic/claude-sonnet-4.5"
GOOGLE = "google/gemini-2.5-pro"
CACHE = {"type": "ephemeral"}
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.328.abc; cc_entrypoint=cli;"
UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
       "AAAABJRU5ErkJggg==")

JSON = dict[str, Any]


def build(slug: str = OPENAI, options: RequestOptions | None = None, **req: Any) -> ChatPlan:
    body: JSON = {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                  "messages": [{"role": "user", "content": "Hello"}]}
    body.update(req)
    return build_chat_request(body, slug, Profiles().get(slug), options or RequestOptions())


def msgs(slug: str = OPENAI, **req: Any) -> list[JSON]:
    return build(slug, **req).body["messages"]


def invalid(**req: Any) -> str:
    with pytest.raises(InvalidRequest) as info:
        build(**req)
    assert info.value.status == 400
    assert info.value.error_type == "invalid_request_error"
    return info.value.message


def user(content: Any) -> JSON:
    return {"role": "user", "content": content}


def assistant(content: Any) -> JSON:
    return {"role": "assistant", "content": content}


def tool_use(call_id: str, name: str, tool_input: JSON) -> JSON:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_result(call_id: str, content: Any = "ok", **extra: Any) -> JSON:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def text_block(text: str, **extra: Any) -> JSON:
    return {"type": "text", "text": text, **extra}


def image_b64() -> JSON:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": PNG}}


def tool_def(name: str, description: str = "A tool.", **extra: Any) -> JSON:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": {"x": {"type": "string"}},
                             "required": ["x"]}, **extra}


def text_of(content: Any) -> str:
    """The text of a chat message content (string or parts)."""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


# ---------------------------------------------------------------------------- basics


def test_minimal_request() -> None:
    plan = build()
    assert plan.body["model"] == OPENAI
    assert plan.body["messages"] == [{"role": "user", "content": "Hello"}]
    assert plan.body["max_tokens"] == 1024
    assert plan.stream is False and "stream" not in plan.body


def test_stream_flag() -> None:
    plan = build(stream=True)
    assert plan.stream is True and plan.body["stream"] is True


def test_user_and_assistant_text() -> None:
    out = msgs(messages=[user("Hi"), assistant("Hello!"), user([text_block("How are you?")])])
    assert out == [{"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello!"},
                   {"role": "user", "content": "How are you?"}]


def test_assistant_text_blocks() -> None:
    out = msgs(messages=[user("Hi"), assistant([text_block("Hello "), text_block("there")]),
                         user("ok")])
    assert out[1]["role"] == "assistant"
    content = text_of(out[1]["content"])
    assert "Hello" in content and "there" in content
    assert content.index("Hello") < content.index("there")


def test_empty_text_parts_dropped() -> None:
    out = msgs(messages=[user([text_block(""), text_block("Hi")])])
    assert out == [{"role": "user", "content": "Hi"}]


# ---------------------------------------------------------------------------- system


def test_system_string() -> None:
    out = msgs(system="You are helpful.")
    assert out[0] == {"role": "system", "content": "You are helpful."}
    assert out[1] == {"role": "user", "content": "Hello"}


def test_system_blocks_without_cache_become_text() -> None:
    out = msgs(system=[text_block("Part one."), text_block("Part two.")])
    assert out[0]["role"] == "system"
    assert "Part one." in text_of(out[0]["content"])
    assert "Part two." in text_of(out[0]["content"])
    assert text_of(out[0]["content"]).index("Part one.") < text_of(out[0]["content"]).index(
        "Part two.")


def test_attribution_block_removed_by_default() -> None:
    out = msgs(system=[text_block(ATTRIBUTION), text_block("You are Claude Code.")])
    assert out[0] == {"role": "system", "content": "You are Claude Code."}


def test_attribution_block_only_system_gives_no_system_message() -> None:
    out = msgs(system=[text_block(ATTRIBUTION)])
    assert [m["role"] for m in out] == ["user"]


def test_attribution_block_kept_with_option() -> None:
    plan = build(options=RequestOptions(keep_attribution_block=True),
                 system=[text_block(ATTRIBUTION), text_block("You are Claude Code.")])
    system = text_of(plan.body["messages"][0]["content"])
    assert ATTRIBUTION in system and "You are Claude Code." in system


@pytest.mark.parametrize("slug", [ANTHROPIC, GOOGLE])
def test_system_cache_control_kept_for_caching_families(slug: str) -> None:
    out = msgs(slug, system=[text_block("Static.", cache_control=CACHE), text_block("Dynamic.")])
    assert out[0] == {"role": "system", "content": [
        {"type": "text", "text": "Static.", "cache_control": CACHE},
        {"type": "text", "text": "Dynamic."},
    ]}


def test_system_cache_control_dropped_for_openai() -> None:
    out = msgs(OPENAI, system=[text_block("Static.", cache_control=CACHE)])
    assert "cache_control" not in json.dumps(out)
    assert text_of(out[0]["content"]) == "Static."


@pytest.mark.parametrize(("slug", "kept"), [(ANTHROPIC, True), (GOOGLE, True), (OPENAI, False)])
def test_cache_control_on_messages_tools_and_top_level(slug: str, kept: bool) -> None:
    plan = build(slug, cache_control={"type": "ephemeral", "ttl": "1h"},
                 messages=[user([text_block("Big context", cache_control=CACHE),
                                 text_block("Question")])],
                 tools=[tool_def("Read", cache_control=CACHE)])
    user_msg = plan.body["messages"][0]
    if kept:
        assert user_msg["content"][0] == {"type": "text", "text": "Big context",
                                          "cache_control": CACHE}
        assert plan.body["tools"][0]["cache_control"] == CACHE
        assert plan.body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    else:
        assert "cache_control" not in json.dumps(plan.body)
        assert "Big context" in text_of(user_msg["content"])


def test_cache_control_on_tool_result_not_lost_for_anthropic() -> None:
    # Claude Code marks the last block of the last user turn, which in a tool loop is a
    # tool_result. Spec 7.2/7.5: keep it (tool messages accept text parts with
    # cache_control) or move it to the nearest text part; dropping it loses the cache.
    out = msgs(ANTHROPIC, messages=_tool_conversation(
        [tool_result("toolu_01", "a.txt", cache_control=CACHE)]))
    assert out[2]["role"] == "tool"
    assert "cache_control" in json.dumps(out[2:]), out[2:]


# ------------------------------------------------------------------- mid-conversation system


def _mid_system_conversation() -> list[JSON]:
    return [user("Hi"), assistant("Hello!"),
            {"role": "system", "content": "The user is now in plan mode."}, user("Go on")]


def test_mid_conversation_system_stays_a_system_message_for_openai() -> None:
    out = msgs(OPENAI, messages=_mid_system_conversation())
    assert out == [{"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello!"},
                   {"role": "system", "content": "The user is now in plan mode."},
                   {"role": "user", "content": "Go on"}]


def test_mid_conversation_system_folded_into_user_turn_for_anthropic() -> None:
    out = msgs(ANTHROPIC, messages=_mid_system_conversation())
    assert [m["role"] for m in out] == ["user", "assistant", "user"]
    folded = text_of(out[2]["content"])
    assert "<system-message>" in folded and "</system-message>" in folded
    assert "The user is now in plan mode." in folded
    assert folded.index("plan mode") < folded.index("Go on")


def test_trailing_mid_conversation_system_still_sent_for_anthropic() -> None:
    out = msgs(ANTHROPIC, messages=[user("Hi"), {"role": "system",
                                                 "content": [text_block("Be brief.")]}])
    assert all(m["role"] != "system" for m in out)
    assert "Be brief." in text_of(out[-1]["content"])


# --------------------------------------------------------------------------- images


def test_image_base64_becomes_data_url() -> None:
    out = msgs(messages=[user([text_block("What is this?"), image_b64()])])
    assert out[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]


def test_image_url() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    out = msgs(messages=[user([image, text_block("Describe")])])
    assert out[0]["content"][0] == {"type": "image_url",
                                    "image_url": {"url": "https://example.com/a.jpg"}}


def test_image_file_source_refused() -> None:
    image = {"type": "image", "source": {"type": "file", "file_id": "file_123"}}
    message = invalid(messages=[user([image])])
    assert "messages.0.content.0.source" in message


def test_pdf_document_becomes_file_part() -> None:
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": "JVBERi0x"}}
    out = msgs(messages=[user([doc, text_block("Summarise")])])
    part = out[0]["content"][0]
    assert part["type"] == "file"
    assert part["file"]["file_data"] == "data:application/pdf;base64,JVBERi0x"


# ------------------------------------------------------------------------ tool use


def _tool_conversation(result_turn: list[JSON]) -> list[JSON]:
    return [user("List /tmp"),
            assistant([text_block("Running it."),
                       tool_use("toolu_01", "Bash", {"command": "ls /tmp", "n": [1, 2]})]),
            user(result_turn)]


def test_tool_use_becomes_assistant_tool_calls() -> None:
    out = msgs(messages=_tool_conversation([tool_result("toolu_01", "a.txt")]))
    call_msg = out[1]
    assert call_msg["role"] == "assistant"
    assert text_of(call_msg["content"]) == "Running it."
    (call,) = call_msg["tool_calls"]
    assert call["id"] == "toolu_01" and call["type"] == "function"
    assert call["function"]["name"] == "Bash"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"command": "ls /tmp", "n": [1, 2]}


def test_tool_use_with_empty_input() -> None:
    out = msgs(messages=[user("time?"), assistant([tool_use("t1", "Now", {})]),
                         user([tool_result("t1", "12:00")])])
    assert json.loads(out[1]["tool_calls"][0]["function"]["arguments"]) == {}
    assert out[1]["content"] in (None, "")


def test_tool_result_string_content() -> None:
    out = msgs(messages=_tool_conversation([tool_result("toolu_01", "a.txt\nb.txt")]))
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt\nb.txt"}
    assert len(out) == 3


def test_tool_result_block_content() -> None:
    result = tool_result("toolu_01", [text_block("line 1"), text_block("line 2")])
    out = msgs(messages=_tool_conversation([result]))
    assert out[2]["role"] == "tool"
    content = text_of(out[2]["content"])
    assert "line 1" in content and "line 2" in content
    assert content.index("line 1") < content.index("line 2")


def test_tool_results_come_before_the_rest_of_the_user_turn() -> None:
    turn = [text_block("Before"), tool_result("toolu_01", "first"), text_block("After")]
    out = msgs(messages=[user("go"),
                         assistant([tool_use("toolu_01", "Bash", {"command": "a"})]),
                         user(turn)])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user"]
    assert out[2]["content"] == "first"
    rest = text_of(out[3]["content"])
    assert "Before" in rest and "After" in rest and "first" not in rest


def test_parallel_tool_results_in_order() -> None:
    calls = [tool_use("call_a", "Read", {"p": "a"}), tool_use("call_b", "Read", {"p": "b"})]
    out = msgs(messages=[user("read both"), assistant(calls),
                         user([tool_result("call_a", "A"), tool_result("call_b", "B"),
                               text_block("thanks")])])
    assert [c["id"] for c in out[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["role"], m.get("tool_call_id")) for m in out[2:]] == [
        ("tool", "call_a"), ("tool", "call_b"), ("user", None)]


def test_tool_result_is_error_marked() -> None:
    out = msgs(messages=_tool_conversation([tool_result("toolu_01", "No such file",
                                                        is_error=True)]))
    ok = msgs(messages=_tool_conversation([tool_result("toolu_01", "No such file")]))
    assert "No such file" in out[2]["content"]
    assert "error" in out[2]["content"].lower()
    assert ok[2]["content"] == "No such file"


def test_image_in_tool_result_goes_to_following_user_message() -> None:
    result = tool_result("toolu_01", [text_block("screenshot taken"), image_b64()])
    out = msgs(messages=_tool_conversation([result]))
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user"]
    assert "screenshot taken" in out[2]["content"]
    images = [p for p in out[3]["content"] if p["type"] == "image_url"]
    assert images == [{"type": "image_url",
                       "image_url": {"url": f"data:image/png;base64,{PNG}"}}]


def test_tool_ids_sanitised_consistently() -> None:
    raw = "tool_0_Bash__thought__Ci+Q/B=="
    out = msgs(messages=[user("go"), assistant([tool_use(raw, "Bash", {"command": "ls"})]),
                         user([tool_result(raw, "done")])])
    call_id = out[1]["tool_calls"][0]["id"]
    assert re.match(r"^[A-Za-z0-9_-]+$", call_id)
    assert out[2]["tool_call_id"] == call_id


def test_consecutive_same_role_messages_merged() -> None:
    out = msgs(messages=[user("one"), user([text_block("two")]), assistant("three"),
                         assistant([text_block("four")]), user("five")])
    assert [m["role"] for m in out] == ["user", "assistant", "user"]
    assert "one" in text_of(out[0]["content"]) and "two" in text_of(out[0]["content"])
    assert "three" in text_of(out[1]["content"]) and "four" in text_of(out[1]["content"])


def test_assistant_text_then_tool_use_turns_merged() -> None:
    out = msgs(messages=[user("go"), assistant("Let me look."),
                         assistant([tool_use("t1", "Read", {"p": "x"})]),
                         user([tool_result("t1", "x")])])
    assert [m["role"] for m in out] == ["user", "assistant", "tool"]
    assert text_of(out[1]["content"]) == "Let me look."
    assert out[1]["tool_calls"][0]["id"] == "t1"


# ----------------------------------------------------------------------------- tools


def test_tools_become_functions() -> None:
    plan = build(tools=[tool_def("Read", "Read a file.")])
    assert plan.body["tools"] == [{"type": "function", "function": {
        "name": "Read", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}},
                       "required": ["x"]},
    }}]


def test_empty_tools_omitted() -> None:
    plan = build(tools=[], tool_choice={"type": "auto"})
    assert "tools" not in plan.body
    assert "tool_choice" not in plan.body


LONG_A = "mcp__claude_ai_Very_Long_Server_Name__search_issues_and_pull_requests_everywhere"
LONG_B = "mcp__claude_ai_Very_Long_Server_Name__search_issues_and_pull_requests_somewhere"


def test_long_tool_names_shortened() -> None:
    plan = build(tools=[tool_def(LONG_A), tool_def(LONG_B), tool_def("Read")])
    names = [t["function"]["name"] for t in plan.body["tools"]]
    assert all(UPSTREAM_NAME.match(n) for n in names), names
    assert len(set(names)) == 3
    assert names[2] == "Read"
    assert plan.names.to_client(names[0]) == LONG_A
    assert plan.names.to_client(names[1]) == LONG_B


def test_long_tool_names_deterministic_across_requests() -> None:
    first = build(tools=[tool_def(LONG_A)]).body["tools"][0]["function"]["name"]
    second = build(tools=[tool_def("Other"), tool_def(LONG_A)]).body["tools"][1]["function"][
        "name"]
    assert first == second


def test_long_tool_name_consistent_in_history_and_tool_choice() -> None:
    plan = build(tools=[tool_def(LONG_A)], tool_choice={"type": "tool", "name": LONG_A},
                 messages=[user("go"), assistant([tool_use("t1", LONG_A, {"x": "1"})]),
                           user([tool_result("t1", "done")])])
    upstream = plan.body["tools"][0]["function"]["name"]
    assert plan.body["messages"][1]["tool_calls"][0]["function"]["name"] == upstream
    assert plan.body["tool_choice"] == {"type": "function", "function": {"name": upstream}}


def test_tool_name_with_illegal_characters_made_safe() -> None:
    plan = build(tools=[tool_def("my.tool:v2")])
    name = plan.body["tools"][0]["function"]["name"]
    assert UPSTREAM_NAME.match(name)
    assert plan.names.to_client(name) == "my.tool:v2"


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
])
def test_tool_choice(choice: JSON, expected: Any) -> None:
    plan = build(tools=[tool_def("Read")], tool_choice=choice)
    assert plan.body["tool_choice"] == expected
    assert "parallel_tool_calls" not in plan.body


@pytest.mark.parametrize("choice", [
    {"type": "auto", "disable_parallel_tool_use": True},
    {"type": "any", "disable_parallel_tool_use": True},
    {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
])
def test_disable_parallel_tool_use(choice: JSON) -> None:
    plan = build(tools=[tool_def("Read")], tool_choice=choice)
    assert plan.body["parallel_tool_calls"] is False


def test_disable_parallel_tool_use_false_leaves_default() -> None:
    plan = build(tools=[tool_def("Read")],
                 tool_choice={"type": "auto", "disable_parallel_tool_use": False})
    assert "parallel_tool_calls" not in plan.body


def test_deferred_tool_omitted_until_referenced() -> None:
    tools = [tool_def("Read"), tool_def("mcp__gh__search", defer_loading=True)]
    plan = build(tools=tools)
    assert [t["function"]["name"] for t in plan.body["tools"]] == ["Read"]
    loaded = build(tools=tools, messages=[
        user("find issues"),
        assistant([tool_use("t1", "ToolSearch", {"query": "github"})]),
        user([tool_result("t1", [{"type": "tool_reference", "tool_name": "mcp__gh__search"}])]),
    ])
    assert [t["function"]["name"] for t in loaded.body["tools"]] == ["Read", "mcp__gh__search"]
    assert "mcp__gh__search" in loaded.body["messages"][2]["content"]


# -------------------------------------------------------------------------- sampling


def test_stop_sequences() -> None:
    plan = build(stop_sequences=["###", "END"])
    assert plan.body["stop"] == ["###", "END"]
    assert plan.stop_sequences == ["###", "END"]


def test_no_stop_sequences_no_stop() -> None:
    assert "stop" not in build().body


@pytest.mark.parametrize(("name", "value"), [
    ("temperature", 0), ("temperature", 0.0), ("temperature", 0.7), ("top_p", 0),
    ("top_p", 0.9), ("top_k", 0), ("top_k", 40),
])
def test_sampling_parameters_kept_including_zero(name: str, value: float) -> None:
    body = build(**{name: value}).body
    assert name in body and body[name] == value


def test_sampling_parameters_absent_when_not_given() -> None:
    body = build().body
    assert not {"temperature", "top_p", "top_k"} & set(body)


def test_metadata_user_id() -> None:
    assert build(metadata={"user_id": "user_abc123"}).body["user"] == "user_abc123"
    assert "user" not in build(metadata={}).body


def test_long_metadata_user_id_shortened_stably() -> None:
    claude_code_id = json.dumps({"device_id": "d" * 64, "account_uuid": "a" * 36,
                                 "session_id": "s" * 36})
    first = build(metadata={"user_id": claude_code_id}).body["user"]
    assert len(first) <= 128
    assert first == build(metadata={"user_id": claude_code_id}).body["user"]


def test_max_tokens_clamped_to_profile_max_output() -> None:
    plan = build(OPENAI, max_tokens=100_000)
    assert plan.body["max_tokens"] == Profiles().get(OPENAI).max_output == 16_384


def test_max_tokens_below_profile_limit_unchanged() -> None:
    assert build(OPENAI, max_tokens=500).body["max_tokens"] == 500


def test_output_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"], "additionalProperties": False}
    plan = build(output_config={"format": {"type": "json_schema", "schema": schema}})
    rf = plan.body["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"] == schema
    assert re.match(r"^[a-zA-Z0-9_-]{1,64}$", rf["json_schema"]["name"])


# ------------------------------------------------------------------------- reasoning


def test_thinking_budget_becomes_exact_reasoning_max_tokens() -> None:
    plan = build(ANTHROPIC, max_tokens=16_000,
                 thinking={"type": "enabled", "budget_tokens": 10_000})
    assert plan.body["reasoning"]["max_tokens"] == 10_000
    assert "effort" not in plan.body["reasoning"]


def test_adaptive_thinking_with_effort() -> None:
    plan = build(ANTHROPIC, thinking={"type": "adaptive"}, output_config={"effort": "high"})
    assert plan.body["reasoning"]["effort"] == "high"
    assert "max_tokens" not in plan.body["reasoning"]


def test_effort_without_thinking() -> None:
    plan = build("openai/gpt-5", output_config={"effort": "low"})
    assert plan.body["reasoning"] == {"effort": "low"}


def test_thinking_disabled_sends_no_budget() -> None:
    plan = build(ANTHROPIC, thinking={"type": "disabled"})
    assert "max_tokens" not in plan.body.get("reasoning", {})


@pytest.mark.parametrize("budget", [1024, 1025])
def test_budget_not_below_max_tokens_refused(budget: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        build(ANTHROPIC, max_tokens=1024, thinking={"type": "enabled", "budget_tokens": budget})
    assert "budget_tokens" in info.value.message


def test_display_omitted_sets_omit_thinking() -> None:
    plan = build(ANTHROPIC, max_tokens=4000,
                 thinking={"type": "enabled", "budget_tokens": 2000, "display": "omitted"})
    assert plan.omit_thinking is True
    assert build(ANTHROPIC).omit_thinking is False


def test_signed_thinking_replayed_in_order_unsigned_dropped() -> None:
    content = [
        {"type": "thinking", "thinking": "first thought", "signature": "sig-1"},
        {"type": "thinking", "thinking": "unsigned thought", "signature": ""},
        {"type": "redacted_thinking", "data": "ENCRYPTED=="},
        {"type": "thinking", "thinking": "no signature key"},
        {"type": "thinking", "thinking": "second thought", "signature": "sig-2"},
        text_block("Answer"),
        tool_use("t1", "Read", {"p": "x"}),
    ]
    out = msgs(ANTHROPIC, messages=[user("q"), assistant(content),
                                    user([tool_result("t1", "x")])])
    details = out[1]["reasoning_details"]
    assert details == [
        {"type": "reasoning.text", "text": "first thought", "signature": "sig-1",
         "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "ENCRYPTED==",
         "format": "anthropic-claude-v1", "index": 1},
        {"type": "reasoning.text", "text": "second thought", "signature": "sig-2",
         "format": "anthropic-claude-v1", "index": 2},
    ]
    assert "unsigned thought" not in json.dumps(out)


def test_assistant_turn_of_only_unsigned_thinking_is_dropped() -> None:
    out = msgs(ANTHROPIC, messages=[user("q"), assistant([
        {"type": "thinking", "thinking": "hmm", "signature": ""}]), user("again")])
    assert all(m["role"] != "assistant" for m in out)


# ------------------------------------------------------------------------ validation


def test_unknown_content_block_type_names_type_and_path() -> None:
    message = invalid(messages=[user([text_block("hi"), {"type": "hologram", "data": 1}])])
    assert "messages.0.content.1.type" in message
    assert "hologram" in message


def test_unknown_block_in_assistant_turn() -> None:
    message = invalid(messages=[user("hi"), assistant([{"type": "video"}])])
    assert "messages.1.content.0.type" in message and "video" in message


def test_unknown_block_inside_tool_result() -> None:
    message = invalid(messages=[user("go"), assistant([tool_use("t1", "X", {})]),
                                user([tool_result("t1", [{"type": "audio"}])])])
    assert "messages.2.content.0.content.0.type" in message and "audio" in message


def test_missing_max_tokens() -> None:
    with pytest.raises(InvalidRequest) as info:
        build_chat_request({"model": "x", "messages": [user("hi")]}, OPENAI,
                           Profiles().get(OPENAI))
    assert "max_tokens" in info.value.message


@pytest.mark.parametrize("value", ["100", 1.5, True, -1])
def test_bad_max_tokens(value: Any) -> None:
    assert "max_tokens" in invalid(max_tokens=value)


def test_missing_messages() -> None:
    with pytest.raises(InvalidRequest) as info:
        build_chat_request({"model": "x", "max_tokens": 10}, OPENAI, Profiles().get(OPENAI))
    assert "messages" in info.value.message


def test_messages_not_a_list() -> None:
    assert "messages" in invalid(messages="hello")


@pytest.mark.parametrize("role", ["tool", "developer", None])
def test_bad_role(role: Any) -> None:
    message = invalid(messages=[user("hi"), {"role": role, "content": "x"}])
    assert "messages.1.role" in message


def test_missing_content() -> None:
    assert "messages.0.content" in invalid(messages=[{"role": "user"}])


def test_bad_tool_choice_type() -> None:
    assert "tool_choice" in invalid(tools=[tool_def("Read")], tool_choice={"type": "sometimes"})


def test_unknown_top_level_fields_ignored() -> None:
    plan = build(
        ANTHROPIC,
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
        container="container_123",
        inference_geo="us",
        diagnostics={"previous_message_id": "msg_1"},
        fallbacks=[{"model": "claude-haiku-4-5"}],
        some_future_field={"x": 1},
        speed="standard",
        output_config={"effort": "medium"},
    )
    body = plan.body
    for key in ("context_management", "container", "inference_geo", "diagnostics",
                "fallbacks", "some_future_field", "speed", "output_config"):
        assert key not in body
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
