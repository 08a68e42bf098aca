"""What every gateway-run tool shares: its definition for the model, one call's context,
and one call's outcome.

A tool is offered to the model as an ordinary function (`ToolSpec`); when the model calls
it, the loop runs `Tool.run` and gets a `ToolOutcome`: the Anthropic block(s) the client sees
(`server_tool_use`'s result block, or `mcp_tool_result`), and the text the model sees in its
tool message. A refused or failed call is an outcome too (with `error_code`), never an
exception: the model is told, and the loop goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function offered to the model."""

    name: str  # the upstream function name (<= 64 chars, [A-Za-z0-9_-])
    description: str
    input_schema: Mapping[str, Any]


@dataclass(slots=True)
class ToolContext:
    """What a call may need to know about the request it serves."""

    request_id: str
    key_id: str  # the client key's non-secret id (rate limits, metrics, workspace access)
    # Every URL that appeared in the conversation so far (web_fetch's url_not_in_prior_context).
    seen_urls: set[str] = field(default_factory=set)
    container_id: str | None = None


@dataclass(slots=True)
class ToolOutcome:
    # Anthropic result block for the client, e.g. {"type": "web_fetch_tool_result", ...}
    # (without tool_use_id: the loop fills it in).
    result_block: dict[str, Any]
    # What the model reads in its tool message.
    model_text: str
    is_error: bool = False
    error_code: str | None = None  # e.g. "max_uses_exceeded", "url_not_allowed"
    # Whether this call counts in usage.server_tool_use (only calls that ran count).
    counted: bool = True
    # Extra URLs this result makes fetchable (web_search results for web_fetch).
    urls: tuple[str, ...] = ()


class Tool(Protocol):
    spec: ToolSpec

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome: ...
