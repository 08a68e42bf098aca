"""Recorded-style OpenRouter chunk builders and an Anthropic stream-grammar checker.

The builders produce what OpenRouter actually sends on `/chat/completions` with
`stream: true`: every chunk carries id/object/created/model/provider; the first has
`delta.role` and `content: ""`; the finish chunk has an empty delta; usage comes alone in a
last chunk whose `choices` is empty; mid-stream failures put a top-level `error` next to
`finish_reason: "error"`.

`run_stream` feeds a chunk list through a `StreamTranslator`, checks every event against
the Anthropic event grammar (`check_grammar`) and, for completed streams, accumulates them
with the official SDK accumulator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from anthropic.lib.streaming._messages import accumulate_event

from openrouter_anthropic.translate.stream import StreamTranslator
from openrouter_anthropic.translate.tools import ToolNames

JSON = dict[str, Any]
GEN_ID = "gen-1761234567-AbCdEfGhIjKlMnOpQrSt"
MODEL = "openai/gpt-4o"
ANTHROPIC_FMT = "anthropic-claude-v1"

# ------------------------------------------------------------------------ chunk builders


def chunk(
    delta: JSON | None = None,
    finish_reason: str | None = None,
    native_finish_reason: str | None = None,
    *,
    model: str = MODEL,
    **extra: Any,
) -> JSON:
    """One `chat.completion.chunk` with a single choice."""
    choice: JSON = {
        "index": 0,
        "delta": {} if delta is None else delta,
        "finish_reason": finish_reason,
        "native_finish_reason": native_finish_reason,
        "logprobs": None,
    }
    return {
        "id": GEN_ID,
        "provider": "OpenAI",
        "model": model,
        "object": "chat.completion.chunk",
        "created": 1761234567,
        "choices": [choice],
        **extra,
    }


def role_chunk() -> JSON:
    return chunk({"role": "assistant", "content": ""})


def text(piece: str) -> JSON:
    return chunk({"role": "assistant", "content": piece})


def texts(*pieces: str) -> list[JSON]:
    return [text(p) for p in pieces]


def finish(reason: str = "stop", native: str | None = None, delta: JSON | None = None) -> JSON:
    """The finish chunk: an empty delta (unless given) and the finish reason."""
    return chunk(delta or {}, reason, native if native is not None else reason)


def usage_chunk(
    prompt: int = 12,
    completion: int = 7,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> JSON:
    """OpenRouter's trailing usage chunk: `choices` is empty."""
    return {
        "id": GEN_ID,
        "provider": "OpenAI",
        "model": MODEL,
        "object": "chat.completion.chunk",
        "created": 1761234567,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost": 0.000123,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def tool_start(index: int, call_id: str | None, name: str, arguments: str = "") -> JSON:
    """First sight of a tool call: id + name (+ maybe some or all arguments)."""
    call: JSON = {"index": index, "type": "function",
                  "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
    return chunk({"role": "assistant", "content": None, "tool_calls": [call]})


def tool_args(index: int, fragment: str) -> JSON:
    return chunk({"role": "assistant", "content": None,
                  "tool_calls": [{"index": index, "function": {"arguments": fragment}}]})


def split(value: str, pieces: int) -> list[str]:
    """`value` cut into `pieces` non-empty fragments (fewer when it is shorter)."""
    pieces = max(1, min(pieces, len(value)))
    step, extra = divmod(len(value), pieces)
    out, pos = [], 0
    for i in range(pieces):
        size = step + (1 if i < extra else 0)
        out.append(value[pos:pos + size])
        pos += size
    return out


def tool_call(index: int, call_id: str | None, name: str, arguments: str,
              pieces: int = 1) -> list[JSON]:
    """A tool call as OpenAI-style providers stream it: name first, then argument pieces."""
    return [tool_start(index, call_id, name)] + [
        tool_args(index, frag) for frag in split(arguments, pieces)
    ]


def reasoning(*details: JSON, text: str | None = None) -> JSON:
    """A reasoning chunk; OpenRouter sends `reasoning` text next to `reasoning_details`."""
    if text is None:
        text = "".join(str(d.get("text") or d.get("summary") or "") for d in details)
    return chunk({"role": "assistant", "content": "", "reasoning": text,
                  "reasoning_details": list(details)})


def r_text(text: str = "", fmt: str = ANTHROPIC_FMT, index: int = 0,
           signature: str | None = None) -> JSON:
    detail: JSON = {"type": "reasoning.text", "text": text, "format": fmt, "index": index}
    if signature is not None:
        detail["signature"] = signature
    return detail


def r_encrypted(data: str, fmt: str = ANTHROPIC_FMT, index: int = 0,
                detail_id: str | None = None) -> JSON:
    detail: JSON = {"type": "reasoning.encrypted", "data": data, "format": fmt, "index": index}
    if detail_id is not None:
        detail["id"] = detail_id
    return detail


def error_chunk(code: int | str, message: str, error_type: str | None = None) -> JSON:
    """OpenRouter's mid-stream failure: top-level `error` and finish_reason "error"."""
    error: JSON = {"code": code, "message": message}
    if error_type is not None:
        error["metadata"] = {"error_type": error_type, "provider_name": "OpenAI"}
    return chunk({"content": ""}, "error", "error", error=error)


# ---------------------------------------------------------------- grammar + accumulation

_BLOCK_DELTAS = {
    "text": {"text_delta", "citations_delta"},
    "tool_use": {"input_json_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "redacted_thinking": set(),
}
_STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                 "refusal", "model_context_window_exceeded"}
_ERROR_TYPES = {"invalid_request_error", "authentication_error", "billing_error",
                "permission_error", "not_found_error", "request_too_large",
                "rate_limit_error", "api_error", "timeout_error", "overloaded_error"}
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def check_grammar(events: Sequence[tuple[str, JSON]], *, complete: bool = True) -> None:
    """Assert that `events` is a valid Anthropic Messages event stream.

    With `complete`, the stream must also have ended: `message_stop` or an `error` event.
    """
    assert events, "no events at all"
    names = [name for name, _ in events]
    assert names[0] == "message_start", f"first event is {names[0]}"
    assert names.count("message_start") == 1, names
    open_index: int | None = None
    open_kind: str | None = None
    signed = False
    next_index = 0
    saw_delta = saw_stop = saw_error = False
    for position, (name, data) in enumerate(events):
        where = f"event #{position} {name}: {data}"
        assert not saw_error, f"event after error: {where}"
        assert not saw_stop, f"event after message_stop: {where}"
        assert isinstance(data, dict) and data.get("type") == name, where
        orjson.dumps(data)  # must be serialisable as-is
        if name == "message_start":
            message = data["message"]
            assert message["type"] == "message" and message["role"] == "assistant", where
            assert message["content"] == [] and message["stop_reason"] is None, where
            assert isinstance(message["usage"]["input_tokens"], int), where
            assert isinstance(message["usage"]["output_tokens"], int), where
        elif name == "content_block_start":
            assert not saw_delta, f"block after message_delta: {where}"
            assert open_index is None, f"block {data['index']} starts while {open_index} open"
            assert data["index"] == next_index, f"index {data['index']}, expected {next_index}"
            block = data["content_block"]
            kind = block["type"]
            assert kind in _BLOCK_DELTAS, where
            if kind == "text":
                assert block["text"] == "", where
            elif kind == "tool_use":
                assert block["input"] == {}, where
                assert _TOOL_ID.match(block["id"]), f"bad tool id: {where}"
                assert isinstance(block["name"], str) and block["name"], where
            elif kind == "thinking":
                assert block["thinking"] == "" and block["signature"] == "", where
            elif kind == "redacted_thinking":
                assert isinstance(block["data"], str) and block["data"], where
            open_index, open_kind, signed = next_index, kind, False
            next_index += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index, f"delta for a block not open: {where}"
            assert open_kind is not None
            delta = data["delta"]
            assert delta["type"] in _BLOCK_DELTAS[open_kind], f"{delta['type']} on {open_kind}"
            assert not signed, f"delta after signature_delta: {where}"
            if delta["type"] == "text_delta":
                assert isinstance(delta["text"], str), where
            elif delta["type"] == "input_json_delta":
                assert isinstance(delta["partial_json"], str), where
            elif delta["type"] == "thinking_delta":
                assert isinstance(delta["thinking"], str), where
            elif delta["type"] == "signature_delta":
                assert isinstance(delta["signature"], str) and delta["signature"], where
                signed = True
        elif name == "content_block_stop":
            assert data["index"] == open_index, f"stop for a block not open: {where}"
            open_index = open_kind = None
        elif name == "message_delta":
            assert open_index is None, f"message_delta while block {open_index} open"
            assert not saw_delta, "second message_delta"
            assert data["delta"]["stop_reason"] in _STOP_REASONS, where
            assert "stop_sequence" in data["delta"], where
            assert isinstance(data["usage"]["output_tokens"], int), where
            saw_delta = True
        elif name == "message_stop":
            assert saw_delta, "message_stop without message_delta"
            saw_stop = True
        elif name == "error":
            assert data["error"]["type"] in _ERROR_TYPES, where
            assert isinstance(data["error"]["message"], str) and data["error"]["message"]
            saw_error = True
        elif name != "ping":
            raise AssertionError(f"unknown event {where}")
    if complete:
        assert saw_stop or saw_error, f"stream did not end: {names}"


def accumulate(events: Iterable[tuple[str, JSON]]) -> Any:
    """The final message as the official Python SDK accumulator builds it."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot,  # type: ignore[arg-type]
                                    json_bufs=json_bufs)
    return snapshot


@dataclass
class StreamResult:
    events: list[tuple[str, JSON]]
    translator: StreamTranslator
    message: Any  # the SDK's ParsedMessage, or None when the stream failed

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[JSON]:
        return [data for n, data in self.events if n == name]

    @property
    def error(self) -> JSON | None:
        errors = self.of("error")
        return errors[0]["error"] if errors else None

    @property
    def message_delta(self) -> JSON:
        (delta,) = self.of("message_delta")
        return delta

    def deltas(self, index: int) -> list[JSON]:
        return [d["delta"] for d in self.of("content_block_delta") if d["index"] == index]

    def blocks(self) -> list[JSON]:
        return [d["content_block"] for d in self.of("content_block_start")]


def translator(
    names: ToolNames | None = None,
    *,
    estimate: int = 42,
    omit_thinking: bool = False,
    stop_sequences: list[str] | None = None,
    model: str = "claude-sonnet-4-5",
    **extra: Any,
) -> StreamTranslator:
    return StreamTranslator("msg_test", model, names or ToolNames(), estimate,
                            omit_thinking, stop_sequences, **extra)


def run_stream(
    chunks: Iterable[JSON],
    *,
    eof: bool = True,
    names: ToolNames | None = None,
    **kwargs: Any,
) -> StreamResult:
    """start() + feed(each chunk) (+ finish() at EOF), grammar-checked and SDK-accumulated."""
    t = translator(names, **kwargs)
    events = list(t.start())
    for c in chunks:
        events.extend(t.feed(c))
    if eof:
        events.extend(t.finish())
    check_grammar(events, complete=eof)
    message = None
    if events[-1][0] == "message_stop":
        message = accumulate(events)
    return StreamResult(events, t, message)


def happy(*body: JSON | list[JSON], reason: str = "stop", native: str | None = None,
          **usage: int) -> list[JSON]:
    """role chunk + body chunks + finish chunk + usage chunk."""
    out = [role_chunk()]
    for item in body:
        out.extend(item if isinstance(item, list) else [item])
    out.append(finish(reason, native))
    out.append(usage_chunk(**usage))
    return out
