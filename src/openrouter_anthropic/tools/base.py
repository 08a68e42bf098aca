"""What every gateway-run tool shares: its definition for the model, one call's context,
and one call's outcome.

A tool is offered to the model as an ordinary function (`ToolSpec`); when the model calls
it, the loop runs `Tool.run` and gets a `ToolOutcome`: the Anthropic block(s) the client sees
(`server_tool_use`'s result block, or `mcp_tool_result`), and the text the model sees in its
tool message. A refused or failed call is an outcome too (with `error_code`), never an
exception: the model is told, and the loop goes on.

`ToolSpec` also says how the loop presents and polices the calls (the use block's type and
name, `max_uses`, a per-key rate limit, the `usage.server_tool_use` counter): the defaults
describe an Anthropic server tool named like its function, so a tool sets only what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SERVER_TOOL_USE = "server_tool_use"
MCP_TOOL_USE = "mcp_tool_use"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function offered to the model, and how its calls appear to the client."""

    name: str  # the upstream function name (<= 64 chars, [A-Za-z0-9_-])
    description: str
    input_schema: Mapping[str, Any]
    # The use block the client sees: "server_tool_use" (id srvtoolu_...) or "mcp_tool_use"
    # (id mcptoolu_..., with server_name).
    block_type: str = SERVER_TOOL_USE
    # `name` in the use block; "" = `name` (MCP: the tool's own name, without the server).
    display_name: str = ""
    server_name: str | None = None  # mcp_tool_use.server_name
    # The usage.server_tool_use counter a call that ran adds to ("web_search_requests"...).
    usage_field: str | None = None
    # Calls allowed per request; later calls answer `max_uses_exceeded` without running.
    max_uses: int | None = None
    # Calls per minute per client key (0: unlimited); over it: `too_many_requests`.
    requests_per_minute: int = 0

    @property
    def client_name(self) -> str:
        return self.display_name or self.name


@dataclass(slots=True)
class ToolContext:
    """What a call may need to know about the request it serves."""

    request_id: str
    key_id: str  # the client key's non-secret id (rate limits, metrics, workspace access)
    # Every URL that appeared in the conversation so far, and in results since, normalised
    # by history.normalize_url (web_fetch's url_not_in_prior_context).
    seen_urls: set[str] = field(default_factory=set)
    container_id: str | None = None
    # The upstream model the request was routed to (sub-requests such as web search use it).
    model: str = ""
    # Top-level fields a tool adds to the final message (code execution: `container`).
    message_fields: dict[str, Any] = field(default_factory=dict)
    # The request's `anthropic-beta` values (the MCP connector's listing beta).
    betas: tuple[str, ...] = ()


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


def failure(spec: ToolSpec, error_code: str, message: str = "") -> ToolOutcome:
    """A call that was refused or failed, in the result shape of its tool.

    Anthropic server tools follow one pattern (`<name>_tool_result` holding
    `<name>_tool_result_error{error_code}`); MCP results carry `is_error` and text.
    """
    words = message or error_code.replace("_", " ")
    if spec.block_type == MCP_TOOL_USE:
        block: dict[str, Any] = {"type": "mcp_tool_result", "is_error": True,
                                 "content": [{"type": "text", "text": words}]}
    else:
        name = spec.client_name
        block = {"type": f"{name}_tool_result",
                 "content": {"type": f"{name}_tool_result_error", "error_code": error_code}}
    return ToolOutcome(block, f"Error ({error_code}): {words}", is_error=True,
                       error_code=error_code, counted=False)
