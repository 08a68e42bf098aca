"""StreamTranslator: recorded-style OpenRouter chunk streams -> Anthropic SSE events.

Every stream goes through `run_stream`, which checks the Anthropic event grammar and (for
completed streams) accumulates the events with the official SDK accumulator.
"""

from __future__ import annotations

import json
import re

import pytest

from chunks import (
    check_grammar,
    chunk,
    error_chunk,
    finish,
    happy,
    r_encrypted,
    r_text,
    reasoning,
    role_chunk,
    run_stream,
    split,
    text,
    texts,
    tool_args,
    tool_call,
    tool_start,
    translator,
    usage_chunk,
)
from openrouter_anthropic.profiles import Profiles
from openrouter_anthropic.translate.request import build_chat_request
from openrouter_anthropic.translate.stream import State
from openrouter_anthropic.translate.tools import ToolNames

ARGS = '{"command": "ls -la /tmp", "description": "List files — ünïcode 🎉"}'
SIG = "EqQBCkYIBxgCKkDtH2Zr9mXJ0u7v+Qp/8=="
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


# ------------------------------------------------------------------ the grammar checker


def _start() -> tuple[str, dict]:
    return ("message_start", {"type": "message_start", "message": {
        "id": "m", "type": "message", "role": "assistant", "content": [], "model": "x",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}})


def _bstart(i: int, kind: str = "text") -> tuple[str, dict]:
    block = {"text": {"type": "text", "text": ""},
             "tool_use": {"type": "tool_use", "id": "t1", "name": "x", "input": {}}}[kind]
    return ("content_block_start", {"type": "content_block_start", "index": i,
                                    "content_block": block})


def _tdelta(i: int) -> tuple[str, dict]:
    return ("content_block_delta", {"type": "content_block_delta", "index": i,
                                    "delta": {"type": "text_delta", "text": "x"}})


def _bstop(i: int) -> tuple[str, dict]:
    return ("content_block_stop", {"type": "content_block_stop", "index": i})


_END = [("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 1}}),
        ("message_stop", {"type": "message_stop"})]
_ERR = ("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})


def test_grammar_checker_accepts_a_valid_stream() -> None:
    check_grammar([_start(), _bstart(0), _tdelta(0), _bstop(0), *_END])


@pytest.mark.parametrize("events", [
    pytest.param([_bstart(0), _start(), _bstop(0), *_END], id="start-not-first"),
    pytest.param([_start(), _bstart(1), _bstop(1), *_END], id="index-not-from-0"),
    pytest.param([_start(), _bstart(0), _bstart(1), _bstop(1), *_END], id="two-open"),
    pytest.param([_start(), _bstart(0), _bstop(0), _tdelta(0), *_END], id="delta-closed"),
    pytest.param([_start(), _bstart(0, "tool_use"), _tdelta(0), _bstop(0), *_END],
                 id="text-delta-on-tool"),
    pytest.param([_start(), _bstart(0), *_END], id="delta-while-open"),
    pytest.param([_start(), _bstart(0), _bstop(0), _ERR, *_END], id="after-error"),
    pytest.param([_start(), _bstart(0), _bstop(0), _END[1]], id="stop-without-delta"),
    pytest.param([_start(), _bstart(0), _bstop(0)], id="unfinished"),
])
def test_grammar_checker_rejects(events: list) -> None:
    with pytest.raises(AssertionError):
        check_grammar(events)


# ------------------------------------------------------------------------- plain text


def test_plain_text() -> None:
    r = run_stream(happy(texts("Hel", "lo, ", "wörld 🎉")))
    assert r.names == ["message_start", "content_block_start", "content_block_delta",
                       "content_block_delta", "content_block_delta", "content_block_stop",
                       "message_delta", "message_stop"]
    assert [d["text"] for d in r.deltas(0)] == ["Hel", "lo, ", "wörld 🎉"]
    assert r.message.content[0].type == "text"
    assert r.message.content[0].text == "Hello, wörld 🎉"
    assert r.message.stop_reason == "end_turn"
    assert r.message.stop_sequence is None


def test_message_start_fields() -> None:
    r = run_stream(happy(text("hi")), estimate=1234, model="claude-opus-4-1")
    message = r.of("message_start")[0]["message"]
    assert message["id"] == "msg_test"
    assert message["model"] == "claude-opus-4-1"
    assert message["usage"]["input_tokens"] == 1234
    assert message["usage"]["output_tokens"] == 0
    assert message["usage"]["cache_read_input_tokens"] == 0
    assert message["usage"]["cache_creation_input_tokens"] == 0


def test_role_chunk_with_empty_content_opens_no_block() -> None:
    t = translator()
    t.start()
    assert t.feed(role_chunk()) == []


def test_content_and_finish_reason_in_same_chunk() -> None:
    r = run_stream([role_chunk(), chunk({"content": "Done."}, "stop", "stop"), usage_chunk()])
    assert r.message.content[0].text == "Done."
    assert r.message.stop_reason == "end_turn"


def test_everything_in_one_chunk() -> None:
    # Fake-streamed providers: one chunk with content, finish and usage.
    only = chunk({"role": "assistant", "content": "All at once."}, "stop", "stop",
                 usage=usage_chunk(prompt=5, completion=3)["usage"])
    r = run_stream([only])
    assert r.message.content[0].text == "All at once."
    assert r.message.usage.output_tokens == 3


# ------------------------------------------------------------------------- tool calls


@pytest.mark.parametrize("pieces", [1, 2, 7, len(ARGS)])
def test_tool_call_arguments_forwarded_verbatim(pieces: int) -> None:
    fragments = split(ARGS, pieces)
    r = run_stream(happy(tool_call(0, "call_abc123", "Bash", ARGS, pieces), reason="tool_calls"))
    assert r.blocks() == [{"type": "tool_use", "id": "call_abc123", "name": "Bash",
                           "input": {}}]
    partials = [d["partial_json"] for d in r.deltas(0)]
    assert partials == fragments
    assert "".join(partials) == ARGS
    assert r.message.content[0].input == json.loads(ARGS)
    assert r.message.stop_reason == "tool_use"


def test_two_parallel_tool_calls() -> None:
    second = '{"file_path": "/etc/hosts"}'
    r = run_stream(happy(tool_call(0, "call_1", "Bash", ARGS, 4),
                         tool_call(1, "call_2", "Read", second, 3), reason="tool_calls"))
    assert [(b["id"], b["name"]) for b in r.blocks()] == [("call_1", "Bash"), ("call_2", "Read")]
    assert "".join(d["partial_json"] for d in r.deltas(0)) == ARGS
    assert "".join(d["partial_json"] for d in r.deltas(1)) == second
    assert [b.input for b in r.message.content] == [json.loads(ARGS), json.loads(second)]


def test_text_then_tool_call() -> None:
    r = run_stream(happy(texts("Let me ", "check."), tool_call(0, "call_1", "Bash", ARGS, 3),
                         reason="tool_calls"))
    assert [b["type"] for b in r.blocks()] == ["text", "tool_use"]
    assert r.message.content[0].text == "Let me check."
    assert r.message.content[1].input == json.loads(ARGS)
    assert r.message.stop_reason == "tool_use"


def test_tool_call_name_and_complete_arguments_in_one_chunk() -> None:
    r = run_stream(happy(tool_start(0, "call_1", "Bash", ARGS), reason="tool_calls"))
    assert r.names.count("content_block_start") == 1
    assert r.deltas(0) == [{"type": "input_json_delta", "partial_json": ARGS}]
    assert r.message.content[0].input == json.loads(ARGS)


def test_tool_call_and_finish_in_one_chunk() -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "Bash", "arguments": ARGS}}
    r = run_stream([role_chunk(), chunk({"tool_calls": [call]}, "tool_calls", "tool_calls"),
                    usage_chunk()])
    assert r.message.content[0].input == json.loads(ARGS)
    assert r.message.stop_reason == "tool_use"


def test_parallel_tool_calls_in_one_chunk() -> None:
    calls = [{"index": i, "id": f"call_{i}", "type": "function",
              "function": {"name": n, "arguments": a}}
             for i, (n, a) in enumerate([("Bash", ARGS), ("Read", '{"file_path": "/x"}')])]
    r = run_stream([role_chunk(), chunk({"tool_calls": calls}), finish("tool_calls"),
                    usage_chunk()])
    assert [b.name for b in r.message.content] == ["Bash", "Read"]
    assert r.message.content[1].input == {"file_path": "/x"}


def test_interleaved_parallel_tool_call_fragments_are_not_lost() -> None:
    # Spec 7.12: fragments for a tool that is not the open block must be buffered or
    # re-ordered, not fail the answer.
    stream = [tool_start(0, "call_1", "Bash"), tool_start(1, "call_2", "Read"),
              tool_args(0, '{"command": '), tool_args(1, '{"file_path": '),
              tool_args(0, '"ls"}'), tool_args(1, '"/x"}')]
    r = run_stream(happy(stream, reason="tool_calls"))
    assert r.error is None
    assert [(b.name, b.input) for b in r.message.content] == [
        ("Bash", {"command": "ls"}), ("Read", {"file_path": "/x"})]


def test_text_after_interleaved_tool_calls_comes_last() -> None:
    stream = [tool_start(0, "call_1", "Bash"), tool_start(1, "call_2", "Read"),
              tool_args(1, '{"file_path": "/x"}'), tool_args(0, '{"command": "ls"}'),
              text("Both started.")]
    r = run_stream(happy(stream, reason="tool_calls"))
    assert [(b.type, getattr(b, "input", None)) for b in r.message.content] == [
        ("tool_use", {"command": "ls"}), ("tool_use", {"file_path": "/x"}), ("text", None)]


def test_three_interleaved_tool_calls_keep_their_order() -> None:
    stream = [tool_start(i, f"call_{i}", f"T{i}") for i in range(3)]
    stream += [tool_args(i, '{"n": ') for i in (2, 0, 1)]
    stream += [tool_args(i, f"{i}}}") for i in (1, 2, 0)]
    r = run_stream(happy(stream, reason="tool_calls"))
    assert [(b.id, b.name, b.input) for b in r.message.content] == [
        (f"call_{i}", f"T{i}", {"n": i}) for i in range(3)]


def test_empty_trailing_fragment_for_an_ended_tool_call_is_harmless() -> None:
    stream = [*tool_call(0, "call_1", "Bash", '{"command": "ls"}'),
              *tool_call(1, "call_2", "Read", '{"file_path": "/x"}'), tool_args(0, "")]
    r = run_stream(happy(stream, reason="tool_calls"))
    assert [b.input for b in r.message.content] == [{"command": "ls"}, {"file_path": "/x"}]


def test_eof_with_a_waiting_tool_call_is_an_error() -> None:
    stream = [role_chunk(), tool_start(0, "call_1", "Bash"), tool_start(1, "call_2", "Read"),
              tool_args(1, '{"file_path": "/x"}')]
    r = run_stream(stream)
    assert r.names[-1] == "error"
    assert "message_delta" not in r.names


def test_new_tool_call_id_at_same_index_starts_new_block() -> None:
    # Some OpenAI-compatible providers give every parallel call index 0 (or none): a new
    # id with a new name is a new call, not more arguments for the previous one.
    first = tool_start(0, "call_1", "Bash", '{"command": "ls"}')
    second = tool_start(0, "call_2", "Read", '{"file_path": "/x"}')
    r = run_stream(happy(first, second, reason="tool_calls"))
    assert r.error is None
    assert [(b.id, b.input) for b in r.message.content] == [
        ("call_1", {"command": "ls"}), ("call_2", {"file_path": "/x"})]


def test_arguments_sent_as_an_object_are_serialised() -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "Read", "arguments": {"file_path": "/x"}}}
    r = run_stream(happy(chunk({"tool_calls": [call]}), reason="tool_calls"))
    assert r.message.content[0].input == {"file_path": "/x"}


@pytest.mark.parametrize("arguments", ["", None], ids=["empty", "null"])
def test_empty_arguments_become_empty_object(arguments: str | None) -> None:
    start = tool_start(0, "call_1", "GetTime")
    start["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] = arguments
    r = run_stream(happy(start, reason="tool_calls"))
    assert "".join(d["partial_json"] for d in r.deltas(0)) == "{}"
    assert r.message.content[0].input == {}
    assert r.message.stop_reason == "tool_use"


def test_whitespace_only_arguments_become_empty_object() -> None:
    # The SDK re-parses the concatenated fragments after every input_json_delta
    # (partial mode); a whitespace-only buffer makes it raise "Unable to parse tool
    # parameter JSON", so blank arguments must not be forwarded as a fragment of their own.
    start = tool_start(0, "call_1", "GetTime", "   ")
    r = run_stream(happy(start, reason="tool_calls"))
    assert [d["partial_json"] for d in r.deltas(0)][-1] == "{}"
    assert r.message.content[0].input == {}


@pytest.mark.parametrize("bad", ['{"command": "ls"', '{"a": 1}}', "[1, 2]", "not json"])
def test_invalid_json_arguments_give_an_error_event(bad: str) -> None:
    r = run_stream(happy(tool_call(0, "call_1", "Bash", bad, 2), reason="tool_calls"))
    assert r.names[-1] == "error"
    assert r.error is not None and r.error["type"] == "api_error"
    assert "Bash" in r.error["message"]
    assert "message_delta" not in r.names
    assert r.translator.state is State.FAILED


def test_tool_call_cut_by_max_tokens_ends_with_max_tokens() -> None:
    # Like Anthropic's API: a tool_use cut off by the output limit ends the message with
    # stop_reason max_tokens (the client sees the truncation and can raise the limit); an
    # api_error would only make the client retry the identical request.
    truncated = ARGS[:20]
    r = run_stream(happy(tool_call(0, "call_1", "Bash", truncated, 3), reason="length"))
    assert r.error is None
    assert r.message_delta["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("raw", [
    "call.abc:1",
    "tool_0_Bash__thought__CiQBcsjafX+/2w==",
    "functions.Read:0",
    "toolu 01 é",
])
def test_tool_call_ids_with_illegal_chars_are_sanitised(raw: str) -> None:
    r1 = run_stream(happy(tool_call(0, raw, "Bash", ARGS), reason="tool_calls"))
    r2 = run_stream(happy(tool_call(0, raw, "Bash", ARGS), reason="tool_calls"))
    block_id = r1.blocks()[0]["id"]
    assert TOOL_ID.match(block_id)
    assert block_id == r2.blocks()[0]["id"]  # stable: history replays must agree


def test_tool_call_ids_kept_when_legal() -> None:
    r = run_stream(happy(tool_call(0, "toolu_01A-b_c", "Bash", ARGS), reason="tool_calls"))
    assert r.blocks()[0]["id"] == "toolu_01A-b_c"


def test_missing_tool_call_ids_are_distinct() -> None:
    r = run_stream(happy(tool_call(0, None, "Bash", ARGS), tool_call(1, None, "Read", "{}"),
                         reason="tool_calls"))
    ids = [b["id"] for b in r.blocks()]
    assert all(TOOL_ID.match(i) for i in ids)
    assert len(set(ids)) == 2, ids


LONG_NAME = "mcp__claude_ai_Very_Long_Server_Name__search_issues_and_pull_requests_everywhere"


def test_long_tool_name_mapped_back_to_client_name() -> None:
    plan = build_chat_request(
        {"model": "x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
         "tools": [{"name": LONG_NAME, "input_schema": {"type": "object"}}]},
        "openai/gpt-4o", Profiles().get("openai/gpt-4o"))
    upstream = plan.body["tools"][0]["function"]["name"]
    assert upstream != LONG_NAME and len(upstream) <= 64
    r = run_stream(happy(tool_call(0, "call_1", upstream, "{}"), reason="tool_calls"),
                   names=plan.names)
    assert r.blocks()[0]["name"] == LONG_NAME
    assert r.message.content[0].name == LONG_NAME


def test_unknown_tool_name_passes_through() -> None:
    r = run_stream(happy(tool_call(0, "call_1", "Bash", "{}"), reason="tool_calls"),
                   names=ToolNames())
    assert r.message.content[0].name == "Bash"


# ------------------------------------------------------------------------------ usage


def test_message_delta_held_until_usage_chunk() -> None:
    t = translator()
    events = t.start() + t.feed(role_chunk()) + t.feed(text("Hi"))
    at_finish = t.feed(finish("stop"))
    assert [n for n, _ in at_finish] == ["content_block_stop"]
    assert t.state is State.FINISHING
    at_usage = t.feed(usage_chunk(prompt=1000, completion=50, cached=600, cache_write=300))
    assert [n for n, _ in at_usage] == ["message_delta", "message_stop"]
    check_grammar(events + at_finish + at_usage)
    usage = at_usage[0][1]["usage"]
    assert usage["input_tokens"] == 100  # 1000 - 600 cached - 300 written
    assert usage["cache_read_input_tokens"] == 600
    assert usage["cache_creation_input_tokens"] == 300
    assert usage["output_tokens"] == 50
    assert t.finish() == []  # [DONE] after completion adds nothing


def test_usage_reaches_the_sdk_message() -> None:
    r = run_stream(happy(text("Hi"), prompt=1000, completion=50, cached=600, cache_write=300),
                   estimate=999)
    assert r.message.usage.input_tokens == 100
    assert r.message.usage.cache_read_input_tokens == 600
    assert r.message.usage.cache_creation_input_tokens == 300
    assert r.message.usage.output_tokens == 50


def test_input_tokens_floored_at_zero() -> None:
    r = run_stream(happy(text("Hi"), prompt=10, completion=1, cached=20))
    assert r.message_delta["usage"]["input_tokens"] == 0


def test_reasoning_tokens_reported() -> None:
    r = run_stream(happy(text("Hi"), completion=80, reasoning=64))
    assert r.message_delta["usage"]["output_tokens"] == 80
    assert r.message_delta["usage"]["output_tokens_details"] == {"thinking_tokens": 64}


def test_usage_in_the_finish_chunk_completes_at_once() -> None:
    t = translator()
    t.start()
    t.feed(text("Hi"))
    out = t.feed(finish("stop") | {"usage": usage_chunk(prompt=9, completion=2)["usage"]})
    assert [n for n, _ in out] == ["content_block_stop", "message_delta", "message_stop"]
    assert out[1][1]["usage"]["input_tokens"] == 9


@pytest.mark.parametrize("reason", ["stop", "tool_calls"])
def test_eof_after_finish_without_usage_still_completes(reason: str) -> None:
    body = tool_call(0, "call_1", "Bash", ARGS) if reason == "tool_calls" else [text("Hi")]
    r = run_stream([role_chunk(), *body, finish(reason)])
    assert r.names[-2:] == ["message_delta", "message_stop"]
    assert r.message_delta["delta"]["stop_reason"] == (
        "tool_use" if reason == "tool_calls" else "end_turn")
    assert r.message_delta["usage"]["output_tokens"] >= 1
    assert r.message_delta["usage"]["input_tokens"] == 42  # the estimate stands


def test_nothing_after_message_stop() -> None:
    t = translator()
    t.start()
    for c in happy(text("Hi")):
        t.feed(c)
    assert t.state is State.DONE
    assert t.feed(text("late")) == []
    assert t.feed(usage_chunk()) == []
    assert t.feed(error_chunk(500, "late failure")) == []
    assert t.finish() == []
    assert t.fail("api_error", "late") == []


def test_content_after_finish_is_dropped() -> None:
    r = run_stream([role_chunk(), text("Hi"), finish("stop"), text(" late"), usage_chunk()])
    assert r.message.content[0].text == "Hi"


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(("code", "error_type", "expected"), [
    (429, "rate_limit_exceeded", "rate_limit_error"),
    (429, None, "rate_limit_error"),
    ("rate_limit_exceeded", None, "rate_limit_error"),
    (503, "provider_overloaded", "overloaded_error"),
    ("provider_overloaded", None, "overloaded_error"),
    ("server_error", None, "api_error"),
    (500, "unmapped_thing", "api_error"),
])
def test_mid_stream_error_chunk(code: int | str, error_type: str | None, expected: str) -> None:
    stream = [role_chunk(), text("Partial "), error_chunk(code, "Provider went away",
                                                           error_type)]
    r = run_stream(stream)
    assert r.names[-1] == "error"
    assert r.names.count("error") == 1
    assert r.error is not None and r.error["type"] == expected
    assert "Provider went away" in r.error["message"]
    assert "message_delta" not in r.names and "message_stop" not in r.names


def test_nothing_after_error_event() -> None:
    t = translator()
    t.start()
    t.feed(text("Hi"))
    out = t.feed(error_chunk(429, "slow down", "rate_limit_exceeded"))
    assert [n for n, _ in out] == ["error"]
    assert t.state is State.FAILED
    assert t.feed(text("more")) == []
    assert t.feed(finish("stop")) == []
    assert t.feed(usage_chunk()) == []
    assert t.feed(error_chunk(500, "second failure")) == []
    assert t.finish() == []
    assert t.fail("api_error", "again") == []


def test_error_event_carries_request_id() -> None:
    t = translator(request_id="req_011CTestRequestId")
    t.start()
    (event,) = t.feed(error_chunk(429, "slow down", "rate_limit_exceeded"))
    assert event[1]["request_id"] == "req_011CTestRequestId"


def test_error_after_finish_before_usage() -> None:
    r = run_stream([role_chunk(), text("Hi"), finish("stop"),
                    error_chunk(502, "upstream died", "provider_unavailable")])
    # Either completes (usage never came) or reports the error, but never both.
    assert ("error" in r.names) != ("message_stop" in r.names)


def test_eof_without_finish_is_an_error() -> None:
    r = run_stream([role_chunk(), text("Partial answer")])
    assert r.names[-1] == "error"
    assert r.error is not None
    assert r.error["type"] in ("api_error", "overloaded_error")
    assert "message_delta" not in r.names


def test_eof_before_any_chunk_is_an_error() -> None:
    r = run_stream([])
    assert r.names == ["message_start", "error"]


def test_fail_mid_stream() -> None:
    t = translator()
    events = t.start() + t.feed(text("Hi"))
    events += t.fail("timeout_error", "upstream idle for 300 s")
    check_grammar(events)
    assert events[-1][1]["error"] == {"type": "timeout_error",
                                      "message": "upstream idle for 300 s"}
    assert t.finish() == []


# --------------------------------------------------------------------------- reasoning


def _anthropic_thinking() -> list[dict]:
    return [reasoning(r_text("Let me ")), reasoning(r_text("think.")),
            reasoning(r_text("", signature=SIG), text="")]


def test_anthropic_reasoning_becomes_thinking_block() -> None:
    r = run_stream(happy(_anthropic_thinking(), texts("Ans", "wer")))
    assert [b["type"] for b in r.blocks()] == ["thinking", "text"]
    assert r.deltas(0) == [
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "think."},
        {"type": "signature_delta", "signature": SIG},
    ]
    assert r.message.content[0].thinking == "Let me think."
    assert r.message.content[0].signature == SIG
    assert r.message.content[1].text == "Answer"


def test_signature_in_the_same_fragment_as_text() -> None:
    r = run_stream(happy(reasoning(r_text("All of it.", signature=SIG)), text("ok")))
    assert r.deltas(0) == [{"type": "thinking_delta", "thinking": "All of it."},
                           {"type": "signature_delta", "signature": SIG}]


def test_two_anthropic_reasoning_indices_give_two_thinking_blocks() -> None:
    r = run_stream(happy(reasoning(r_text("first", index=0)),
                         reasoning(r_text("", index=0, signature="sig-A"), text=""),
                         reasoning(r_text("second", index=1)),
                         reasoning(r_text("", index=1, signature="sig-B"), text=""),
                         text("done")))
    assert [(b.type, getattr(b, "thinking", None), getattr(b, "signature", None))
            for b in r.message.content] == [("thinking", "first", "sig-A"),
                                            ("thinking", "second", "sig-B"),
                                            ("text", None, None)]


def test_thinking_then_tool_call() -> None:
    r = run_stream(happy(_anthropic_thinking(), tool_call(0, "toolu_01", "Bash", ARGS, 3),
                         reason="tool_calls"))
    assert [b.type for b in r.message.content] == ["thinking", "tool_use"]
    assert r.message.content[0].signature == SIG
    assert r.message.content[1].input == json.loads(ARGS)


def test_anthropic_encrypted_reasoning_becomes_redacted_thinking() -> None:
    r = run_stream(happy(reasoning(r_encrypted("EmwKAhgBEgy3va3pzix/LafPsn4a"), text=""),
                         text("Hi")))
    assert r.blocks()[0] == {"type": "redacted_thinking",
                             "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
    assert r.deltas(0) == []
    assert r.message.content[0].type == "redacted_thinking"
    assert r.message.content[0].data == "EmwKAhgBEgy3va3pzix/LafPsn4a"
    assert r.message.content[1].text == "Hi"


def test_thinking_then_redacted_thinking_in_order() -> None:
    r = run_stream(happy(reasoning(r_text("plain", index=0, signature=SIG)),
                         reasoning(r_encrypted("ENC", index=1), text=""), text("Hi")))
    assert [b.type for b in r.message.content] == ["thinking", "redacted_thinking", "text"]
    assert r.message.content[0].signature == SIG


def _replayed_details(content: list[dict], slug: str) -> dict:
    """Send an assistant turn back through build_chat_request; the upstream assistant msg."""
    req = {"model": "claude", "max_tokens": 2000, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": "next"},
    ]}
    plan = build_chat_request(req, slug, Profiles().get(slug))
    (assistant,) = [m for m in plan.body["messages"] if m["role"] == "assistant"]
    return assistant


OPENAI_DETAILS = [
    {"type": "reasoning.summary", "summary": "**Planning**\nI will list the files.",
     "format": "openai-responses-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": "gAAAAABo1xyzENCRYPTEDblob==", "id": "rs_0a1b2c",
     "format": "openai-responses-v1", "index": 1},
]
GEMINI_DETAILS = [
    {"type": "reasoning.text", "text": "**Analyzing the request** I need the file list.",
     "format": "google-gemini-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": "CiQBcsjafXthoughtSignature==", "id": "tool_Bash_0",
     "format": "google-gemini-v1", "index": 1},
]


def _foreign_stream(details: list[dict]) -> list[dict]:
    """Stream `details` the way OpenRouter does: text pieces, then the encrypted detail
    in the same chunk as the tool call."""
    head, encrypted = details
    key = "summary" if head["type"] == "reasoning.summary" else "text"
    pieces = [dict(head, **{key: piece}) for piece in split(head[key], 3)]
    out = [reasoning(p) for p in pieces]
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}
    out.append(chunk({"content": None, "reasoning_details": [encrypted], "tool_calls": [call]}))
    return out


@pytest.mark.parametrize(("details", "slug"), [
    (OPENAI_DETAILS, "openai/gpt-5"),
    (GEMINI_DETAILS, "google/gemini-2.5-pro"),
], ids=["openai", "gemini"])
def test_foreign_reasoning_round_trips_through_the_signature(details: list[dict],
                                                             slug: str) -> None:
    r = run_stream(happy(_foreign_stream(details), reason="tool_calls"))
    assert [b.type for b in r.message.content] == ["thinking", "tool_use"]
    thinking = r.message.content[0]
    head = details[0]
    assert thinking.thinking == head.get("summary", head.get("text"))
    assert thinking.signature
    # The client sends the turn back unchanged: upstream gets the original details.
    content = [b.to_dict() for b in r.message.content]
    assistant = _replayed_details(content, slug)
    assert assistant["reasoning_details"] == details
    assert assistant["tool_calls"][0]["id"] == "call_1"


def test_foreign_reasoning_with_only_encrypted_detail() -> None:
    encrypted = dict(OPENAI_DETAILS[1], index=0)
    r = run_stream(happy(reasoning(encrypted, text=""), text("Hi")))
    assert r.message.content[0].type == "thinking"
    assert r.message.content[0].thinking == ""
    assistant = _replayed_details([b.to_dict() for b in r.message.content], "openai/gpt-5")
    assert assistant["reasoning_details"] == [encrypted]


@pytest.mark.parametrize("key", ["reasoning", "reasoning_content"])
def test_plain_reasoning_strings(key: str) -> None:
    stream = [chunk({"role": "assistant", "content": "", key: "Hmm, "}),
              chunk({"role": "assistant", "content": "", key: "okay."})]
    r = run_stream(happy(stream, text("Answer")))
    assert [b["type"] for b in r.blocks()] == ["thinking", "text"]
    assert [d["thinking"] for d in r.deltas(0) if d["type"] == "thinking_delta"] == [
        "Hmm, ", "okay."]
    assert r.message.content[0].thinking == "Hmm, okay."
    assert r.message.content[1].text == "Answer"


def test_plain_reasoning_replayed_as_text_only() -> None:
    stream = [chunk({"role": "assistant", "content": "", "reasoning": "Hmm, okay."})]
    r = run_stream(happy(stream, text("Answer")))
    content = [b.to_dict() for b in r.message.content]
    # No provider state to give back...
    assert "reasoning_details" not in _replayed_details(content, "anthropic/claude-sonnet-4.5")
    # ...but models that want their reasoning text back get it.
    assert _replayed_details(content, "deepseek/deepseek-r1")["reasoning"] == "Hmm, okay."


def test_omit_thinking_suppresses_text_but_keeps_signature() -> None:
    r = run_stream(happy(_anthropic_thinking(), text("Answer")), omit_thinking=True)
    assert r.deltas(0) == [{"type": "signature_delta", "signature": SIG}]
    assert r.message.content[0].thinking == ""
    assert r.message.content[0].signature == SIG
    assert r.message.content[1].text == "Answer"


def test_omit_thinking_keeps_foreign_signature() -> None:
    r = run_stream(happy(_foreign_stream(OPENAI_DETAILS), reason="tool_calls"),
                   omit_thinking=True)
    assert [d["type"] for d in r.deltas(0)] == ["signature_delta"]
    content = [b.to_dict() for b in r.message.content]
    assert _replayed_details(content, "openai/gpt-5")["reasoning_details"] == OPENAI_DETAILS


# ------------------------------------------------------------------------ stop reasons


@pytest.mark.parametrize(("finish_reason", "native", "expected"), [
    ("stop", "stop", "end_turn"),
    ("stop", "end_turn", "end_turn"),
    ("stop", "STOP", "end_turn"),
    ("length", "length", "max_tokens"),
    ("length", "max_tokens", "max_tokens"),
    ("length", "MAX_TOKENS", "max_tokens"),
    ("content_filter", "content_filter", "refusal"),
    ("content_filter", "SAFETY", "refusal"),
    ("stop", "refusal", "refusal"),
])
def test_finish_reason_mapping(finish_reason: str, native: str, expected: str) -> None:
    r = run_stream(happy(text("x"), reason=finish_reason, native=native))
    assert r.message_delta["delta"]["stop_reason"] == expected
    assert r.message.stop_reason == expected


def test_refusal_has_stop_details() -> None:
    r = run_stream(happy(text("I can't help with that."), reason="content_filter"))
    assert r.message_delta["delta"]["stop_details"] == {"type": "refusal"}


def test_refusal_delta_gives_refusal_stop_reason() -> None:
    # OpenAI models put refusals in delta.refusal; the non-streaming path answers
    # stop_reason "refusal" for message.refusal, streaming must agree.
    stream = [chunk({"role": "assistant", "content": None, "refusal": "I can't "}),
              chunk({"role": "assistant", "content": None, "refusal": "help with that."})]
    r = run_stream(happy(stream))
    assert r.message.content[0].text == "I can't help with that."
    assert r.message.stop_reason == "refusal"


def test_stop_with_tool_calls_is_tool_use() -> None:
    r = run_stream(happy(tool_call(0, "call_1", "Bash", ARGS), reason="stop"))
    assert r.message.stop_reason == "tool_use"


def test_native_stop_sequence_names_the_only_stop_sequence() -> None:
    r = run_stream(happy(text("1, 2, 3"), native="stop_sequence"), stop_sequences=["###"])
    assert r.message_delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
    assert r.message.stop_sequence == "###"


def test_native_stop_sequence_with_several_candidates_names_none() -> None:
    r = run_stream(happy(text("1, 2, 3"), native="stop_sequence"),
                   stop_sequences=["###", "END"])
    assert r.message_delta["delta"]["stop_reason"] == "stop_sequence"
    assert r.message_delta["delta"]["stop_sequence"] is None


def test_stop_sequence_is_null_for_end_turn() -> None:
    r = run_stream(happy(text("x")), stop_sequences=["###"])
    assert r.message_delta["delta"]["stop_sequence"] is None


# ----------------------------------------------------------------------- full sessions


def test_claude_session_thinking_text_tools_and_cache_usage() -> None:
    stream = happy(
        _anthropic_thinking(),
        texts("I'll look ", "at both files."),
        tool_call(0, "toolu_01ABC", "Read", '{"file_path": "/a.py"}', 5),
        tool_call(1, "toolu_01DEF", "Read", '{"file_path": "/b.py"}', 5),
        reason="tool_calls", native="tool_use",
        prompt=20_000, completion=321, cached=18_000, cache_write=1_500,
    )
    r = run_stream(stream)
    m = r.message
    assert [b.type for b in m.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert m.content[0].thinking == "Let me think."
    assert m.content[1].text == "I'll look at both files."
    assert [b.id for b in m.content[2:]] == ["toolu_01ABC", "toolu_01DEF"]
    assert [b.input for b in m.content[2:]] == [{"file_path": "/a.py"}, {"file_path": "/b.py"}]
    assert m.stop_reason == "tool_use"
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens,
            m.usage.cache_creation_input_tokens, m.usage.output_tokens) == (500, 18_000,
                                                                             1_500, 321)


def test_translators_do_not_share_state() -> None:
    a, b = translator(), translator()
    a.start()
    b.start()
    a.feed(text("A"))
    out = b.feed(tool_start(0, "call_1", "Bash", "{}"))
    assert out[0][1]["index"] == 0
