"""Sans-IO stream translator: OpenRouter chunks in, Anthropic SSE events out.

States, in order: STREAMING (blocks open and close as deltas arrive) -> FINISHING (the
finish_reason came; waiting for OpenRouter's trailing usage chunk) -> DONE. An upstream
error or an end of input without a finish moves to FAILED after one `error` event.
Nothing is emitted after DONE or FAILED.

Blocks open lazily, one at a time, indexed contiguously from 0: Anthropic blocks cannot
interleave, so a new kind of delta (or a new tool-call index) closes the open block.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import stream_error
from .common import is_anthropic_format, seal_reasoning, stop_reason, usage
from .reasoning import TEXT_ONLY_FORMAT, detail_text, merge_fragment
from .response import matched_stop_sequence
from .tools import ToolNames, tool_call_id

Event = tuple[str, dict[str, Any]]


class State(enum.Enum):
    STREAMING = "streaming"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class _ToolCall:
    raw_id: Any
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Block:
    index: int
    kind: str  # "text" | "thinking" | "tool_use"
    tool_key: int | None = None  # which tool call (see StreamTranslator._tool_key)
    detail_index: Any = None  # reasoning_details[].index
    anthropic: bool = True  # thinking: Anthropic-format (own signature) or sealed foreign
    signature: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    name: str = ""


class StreamTranslator:
    def __init__(
        self,
        message_id: str,
        model: str,
        names: ToolNames,
        input_tokens_estimate: int = 0,
        omit_thinking: bool = False,
        stop_sequences: list[str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.message_id = message_id
        self.model = model
        self.names = names
        self.input_estimate = input_tokens_estimate
        self.omit_thinking = omit_thinking
        self.stop_sequences = stop_sequences or []
        self.state = State.STREAMING
        self._next_index = 0
        self._open: _Block | None = None
        # Tool calls: each gets a key (a new `id` at a reused index is a new call). One is
        # streamed live; calls whose fragments arrive while another is open wait in
        # `_waiting` (in order) and are emitted whole when the live one closes.
        self._tool_keys: dict[int, tuple[int, str | None]] = {}
        self._next_tool_key = 0
        self._waiting: dict[int, _ToolCall] = {}
        self._closed_tools: set[int] = set()
        self._saw_tool_call = False
        self._saw_refusal = False
        self._finish_reason: str | None = None
        self._finish: tuple[str | None, str | None, Mapping[str, Any]] | None = None
        self._usage: Mapping[str, Any] | None = None
        self.error: tuple[str, str] | None = None
        self.output_chars = 0

    # -- public API -------------------------------------------------------------------

    def start(self) -> list[Event]:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage(None, self.input_estimate),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        if self.state in (State.DONE, State.FAILED):
            return []
        out: list[Event] = []
        if chunk.get("error") is not None:
            return self._fail(*stream_error(chunk["error"]), out)
        raw_usage = chunk.get("usage")
        if isinstance(raw_usage, Mapping):
            self._usage = raw_usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason") == "error":
                return self._fail(*stream_error(choice.get("error") or {}), out)
            if self.state is State.STREAMING:
                self._delta(choice.get("delta") or {}, out)
                if self.failed:
                    return out
                finish = choice.get("finish_reason")
                if finish:
                    self._finish_reason = finish
                    self._close(out)
                    if self.failed:
                        return out
                    self._finish = (finish, choice.get("native_finish_reason"), choice)
                    self.state = State.FINISHING
        if self.state is State.FINISHING and self._usage is not None:
            self._complete(out)
        return out

    def finish(self) -> list[Event]:
        """The upstream stream ended ([DONE] or EOF)."""
        out: list[Event] = []
        if self.state is State.FINISHING:
            self._complete(out)
        elif self.state is State.STREAMING:
            self._fail("api_error", "the upstream stream ended before the answer was finished",
                       out)
        return out

    def fail(self, error_type: str, message: str) -> list[Event]:
        """End the stream with an error (timeouts, connection loss) unless it is over."""
        if self.state in (State.DONE, State.FAILED):
            return []
        return self._fail(error_type, message, [])

    # -- deltas -----------------------------------------------------------------------

    def _delta(self, delta: Mapping[str, Any], out: list[Event]) -> None:
        details = delta.get("reasoning_details")
        if details:
            for detail in details:
                if isinstance(detail, Mapping):
                    self._reasoning_detail(detail, out)
        else:
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._reasoning_detail(
                    {"type": "reasoning.text", "text": reasoning, "format": TEXT_ONLY_FORMAT,
                     "index": 0},
                    out,
                )
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._saw_refusal |= key == "refusal"
                self._text(text, out)
        calls = delta.get("tool_calls")
        if calls:
            for call in calls:
                if isinstance(call, Mapping):
                    self._tool_call(call, out)
                    if self.failed:
                        return

    def _text(self, text: str, out: list[Event]) -> None:
        block = self._open
        if block is None or block.kind != "text":
            block = self._begin("text", {"type": "text", "text": ""}, out)
        self.output_chars += len(text)
        out.append(_delta_event(block.index, {"type": "text_delta", "text": text}))

    def _reasoning_detail(self, detail: Mapping[str, Any], out: list[Event]) -> None:
        anthropic = is_anthropic_format(detail)
        if anthropic and detail.get("type") == "reasoning.encrypted":
            self._close(out)
            index = self._allocate()
            shell = {"type": "redacted_thinking", "data": str(detail.get("data") or "")}
            out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": shell}))
            out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            return
        open_block = self._open
        continues = (
            open_block is not None
            and open_block.kind == "thinking"
            and open_block.anthropic == anthropic
            and (not anthropic or open_block.detail_index == detail.get("index"))
        )
        if continues and open_block is not None:
            block = open_block
        else:
            block = self._begin("thinking", {"type": "thinking", "thinking": "",
                                             "signature": ""}, out)
            block.anthropic = anthropic
            block.detail_index = detail.get("index")
        if anthropic:
            signature = detail.get("signature")
            if isinstance(signature, str) and signature:
                block.signature = signature
        else:
            merge_fragment(block.details, detail)
        text = detail_text(detail)
        if text:
            self.output_chars += len(text)
            if not self.omit_thinking:
                out.append(_delta_event(block.index, {"type": "thinking_delta",
                                                      "thinking": text}))

    def _tool_key(self, call: Mapping[str, Any]) -> int:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        raw_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        known = self._tool_keys.get(position)
        if known is not None and (raw_id is None or raw_id == known[1]):
            return known[0]
        key = self._next_tool_key
        self._next_tool_key += 1
        self._tool_keys[position] = (key, raw_id)
        return key

    def _tool_call(self, call: Mapping[str, Any], out: list[Event]) -> None:
        key = self._tool_key(call)
        function = call.get("function") or {}
        fragment = function.get("arguments")
        if isinstance(fragment, Mapping):  # some providers send parsed arguments
            fragment = orjson.dumps(fragment).decode()
        fragment = fragment if isinstance(fragment, str) else ""
        block = self._open
        live = block is not None and block.kind == "tool_use" and block.tool_key == key
        if not live:
            if key in self._closed_tools:
                if fragment.strip():
                    self._fail("api_error", "the upstream sent arguments for a tool call "
                               "that had already ended", out)
                return
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.arguments.append(fragment)
                return
            self._saw_tool_call = True
            name = str(function.get("name") or "")
            if block is not None and block.kind == "tool_use" and not _is_json_object(
                "".join(block.arguments)
            ):
                # The live call is not finished: this one interleaves with it and waits.
                self._waiting[key] = _ToolCall(call.get("id"), name, [fragment])
                return
            block = self._begin("tool_use", {
                "type": "tool_use",
                "id": tool_call_id(call.get("id")),
                "name": self.names.to_client(name),
                "input": {},
            }, out)
            block.tool_key = key
            block.name = name
        assert block is not None
        self._forward_arguments(block, fragment, out)

    def _forward_arguments(self, block: _Block, fragment: str, out: list[Event]) -> None:
        if not block.arguments:
            # Leading whitespace is insignificant JSON, and a blank buffer makes the SDK's
            # partial parser fail: hold it back.
            fragment = fragment.lstrip()
        if fragment:
            block.arguments.append(fragment)
            self.output_chars += len(fragment)
            out.append(_delta_event(block.index, {"type": "input_json_delta",
                                                  "partial_json": fragment}))

    # -- blocks -----------------------------------------------------------------------

    def _allocate(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _begin(self, kind: str, shell: dict[str, Any], out: list[Event]) -> _Block:
        self._close(out)
        block = _Block(index=self._allocate(), kind=kind)
        out.append(("content_block_start", {"type": "content_block_start",
                                             "index": block.index, "content_block": shell}))
        self._open = block
        return block

    def _close(self, out: list[Event]) -> None:
        block = self._open
        if block is None:
            return
        self._open = None
        if block.kind == "thinking":
            signature = block.signature if block.anthropic else seal_reasoning(block.details)
            if signature:
                out.append(_delta_event(block.index, {"type": "signature_delta",
                                                      "signature": signature}))
        elif block.kind == "tool_use":
            assert block.tool_key is not None
            self._closed_tools.add(block.tool_key)
            if not self._end_tool(block, out):
                return
        out.append(("content_block_stop", {"type": "content_block_stop",
                                            "index": block.index}))
        self._flush_waiting(out)

    def _end_tool(self, block: _Block, out: list[Event]) -> bool:
        """Check the finished arguments; False when the stream had to fail."""
        raw = "".join(block.arguments)
        if not raw:
            out.append(_delta_event(block.index, {"type": "input_json_delta",
                                                  "partial_json": "{}"}))
        elif not _is_json_object(raw) and self._finish_reason != "length":
            # (Cut by the output limit, the arguments are incomplete, as from Anthropic.)
            self._fail("api_error", "the model produced invalid JSON arguments for tool "
                       f"{self.names.to_client(block.name)!r}", out)
            return False
        return True

    def _flush_waiting(self, out: list[Event]) -> None:
        while self._waiting and not self.failed:
            key = next(iter(self._waiting))
            call = self._waiting.pop(key)
            block = self._begin("tool_use", {
                "type": "tool_use",
                "id": tool_call_id(call.raw_id),
                "name": self.names.to_client(call.name),
                "input": {},
            }, out)
            block.tool_key = key
            block.name = call.name
            self._forward_arguments(block, "".join(call.arguments), out)
            self._close(out)

    # -- ending -----------------------------------------------------------------------

    def _complete(self, out: list[Event]) -> None:
        assert self._finish is not None
        finish, native, choice = self._finish
        reason = stop_reason(finish, native, self._saw_tool_call)
        if self._saw_refusal and reason == "end_turn":
            reason = "refusal"
        delta: dict[str, Any] = {
            "stop_reason": reason,
            "stop_sequence": matched_stop_sequence(reason, choice, self.stop_sequences),
        }
        if reason == "refusal":
            delta["stop_details"] = {"type": "refusal"}
        final_usage = usage(self._usage, self.input_estimate)
        if self._usage is None:
            final_usage["output_tokens"] = max(self.output_chars // 4, 1)
        out.append(("message_delta", {"type": "message_delta", "delta": delta,
                                       "usage": final_usage}))
        out.append(("message_stop", {"type": "message_stop"}))
        self.state = State.DONE

    def _fail(self, error_type: str, message: str, out: list[Event]) -> list[Event]:
        self.error = (error_type, message)
        event: dict[str, Any] = {"type": "error",
                                 "error": {"type": error_type, "message": message}}
        if self.request_id is not None:
            event["request_id"] = self.request_id
        out.append(("error", event))
        self.state = State.FAILED
        self._open = None
        return out

    @property
    def blocks_started(self) -> bool:
        """Whether any content block has begun (time to first token)."""
        return self._next_index > 0

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED

    @property
    def final_usage(self) -> Mapping[str, Any] | None:
        return self._usage


def _delta_event(index: int, delta: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index,
                                    "delta": delta})


def _is_json_object(raw: str) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False
