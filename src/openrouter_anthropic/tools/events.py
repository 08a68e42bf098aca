"""One client-facing Anthropic event stream made of several model calls. Sans-IO.

Each model call of a tool loop yields a complete event sequence (message_start ... message_stop)
from the stream translator. The client must see one message: one `message_start` (the first
call's), blocks indexed contiguously across calls, the gateway's own result blocks between
them (whole, in `content_block_start`), and one `message_delta` + `message_stop` at the end.

`LoopEvents.relay` rewrites one call's events; it also accumulates every block the client
was shown (as the SDK does), so the loop knows the model's calls and can send the turn back
to the model. Calls of gateway-run tools are presented as `server_tool_use` (or
`mcp_tool_use`) blocks with the gateway's own ids, both here and in non-streaming answers
(`present_call`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..translate.stream import Event
from .base import MCP_TOOL_USE, ToolSpec

_ID_PREFIX = {MCP_TOOL_USE: "mcptoolu_"}


def new_call_id(spec: ToolSpec) -> str:
    return _ID_PREFIX.get(spec.block_type, "srvtoolu_") + secrets.token_hex(12)


def present_call(spec: ToolSpec, tool_input: Any) -> dict[str, Any]:
    """The client's view of a call the model made to a gateway-run tool."""
    block: dict[str, Any] = {"type": spec.block_type, "id": new_call_id(spec),
                             "name": spec.client_name, "input": tool_input}
    if spec.server_name is not None:
        block["server_name"] = spec.server_name
    return block


def block_events(index: int, block: dict[str, Any]) -> list[Event]:
    """A result block, whole: start (with the full block) and stop."""
    return [("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": block}),
            ("content_block_stop", {"type": "content_block_stop", "index": index})]


class LoopEvents:
    def __init__(self, gateway_tools: Mapping[str, ToolSpec],
                 leading: Sequence[dict[str, Any]] = ()) -> None:
        self.gateway_tools = gateway_tools
        # Everything the client was shown, in order; `leading` blocks (MCP tool listings)
        # are sent whole right after message_start.
        self.blocks: list[dict[str, Any]] = list(leading)
        self.presented: dict[str, str] = {}  # call id -> the function (spec.name) it called
        self.started = False
        self.failed = False
        # The current model call: its block indices -> ours, and its ending.
        self._index: dict[int, int] = {}
        self._arguments: dict[int, list[str]] = {}
        self.turn_start = 0
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.stop_details: Any = None
        self.usage: dict[str, Any] = {}

    def begin_turn(self) -> None:
        self._index = {}
        self._arguments = {}
        self.turn_start = len(self.blocks)
        self.stop_reason = self.stop_sequence = self.stop_details = None
        self.usage = {}

    @property
    def turn_blocks(self) -> list[dict[str, Any]]:
        return self.blocks[self.turn_start:]

    def relay(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for name, data in events:
            if name == "content_block_start":
                out.append(self._start(data))
            elif name == "content_block_delta":
                out.append(self._delta(data))
            elif name == "content_block_stop":
                out.append(self._stop(data))
            elif name == "message_start":
                if not self.started:
                    self.started = True
                    out.append((name, data))
                    for index, block in enumerate(self.blocks):
                        out.extend(block_events(index, block))
            elif name == "message_delta":
                delta = data.get("delta") or {}
                self.stop_reason = delta.get("stop_reason")
                self.stop_sequence = delta.get("stop_sequence")
                self.stop_details = delta.get("stop_details")
                self.usage = dict(data.get("usage") or {})
            elif name == "message_stop":
                continue
            else:  # ping, error (after which nothing follows)
                self.failed |= name == "error"
                out.append((name, data))
        return out

    def add_block(self, block: dict[str, Any]) -> list[Event]:
        self.blocks.append(block)
        return block_events(len(self.blocks) - 1, block)

    def _start(self, data: dict[str, Any]) -> Event:
        index = len(self.blocks)
        self._index[data["index"]] = index
        shell = data["content_block"]
        spec = self.gateway_tools.get(shell.get("name", "")) if shell.get("type") == "tool_use" \
            else None
        if spec is not None:
            shell = present_call(spec, {})
            self.presented[shell["id"]] = spec.name
        if shell.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use"):
            self._arguments[index] = []
        self.blocks.append({**shell})
        return ("content_block_start", {**data, "index": index, "content_block": shell})

    def _delta(self, data: dict[str, Any]) -> Event:
        index = self._index[data["index"]]
        block, delta = self.blocks[index], data["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        elif kind == "input_json_delta":
            self._arguments.setdefault(index, []).append(delta["partial_json"])
        elif kind == "citations_delta":
            block["citations"] = [*block.get("citations", []), delta["citation"]]
        return ("content_block_delta", {**data, "index": index})

    def _stop(self, data: dict[str, Any]) -> Event:
        index = self._index[data["index"]]
        fragments = self._arguments.pop(index, None)
        if fragments is not None:
            raw = "".join(fragments)
            try:
                value = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError:
                value = None
            # (Cut by max_tokens: the arguments are incomplete; the loop reports that.)
            self.blocks[index]["input"] = value if isinstance(value, dict) else {
                "_invalid_arguments": raw}
        return ("content_block_stop", {**data, "index": index})
