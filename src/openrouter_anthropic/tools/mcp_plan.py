"""A request's MCP plan: its `mcp_servers` and `mcp_toolset` tools, validated.

Three beta shapes are accepted, with or without their `anthropic-beta` header:

- `mcp-client-2025-04-04`: `mcp_servers:[{type:"url", url, name, authorization_token?,
  tool_configuration?{enabled, allowed_tools}}]`; every declared server's tools are offered.
- `mcp-client-2025-11-20`: `tools:[{type:"mcp_toolset", mcp_server_name,
  default_config?{enabled, defer_loading}, configs?{<tool>:{enabled, defer_loading}}}]`.
- `mcp-client-2026-09-15`: a toolset's pinned `tools` listing, or an `mcp_tool_listing`
  block from an earlier assistant turn, is used instead of asking the server; with that
  beta, listings fetched from a server can be handed back as `mcp_tool_listing` blocks.

A toolset may also name a managed server (`mcp.servers.<name>`, mcp_manager.py) without an
`mcp_servers` entry, and a key can have managed servers attached to every request.

Pure: no I/O. A malformed entry, a duplicate name or a toolset naming no server is a 400
`invalid_request_error` naming it; a request without MCP has no plan (None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidRequest
from .mcp_session import CallResult, McpToolDef

LISTING_BETA = "mcp-client-2026-09-15"
_TOOLSET = "mcp_toolset"


# -- the plan -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolConfig:
    enabled: bool = True
    defer_loading: bool = False


@dataclass(frozen=True, slots=True)
class ServerPlan:
    """One MCP server a request uses, and which of its tools it offers."""

    name: str
    url: str | None  # None: a managed server (mcp.servers.<name>)
    authorization_token: str | None = field(default=None, repr=False)
    default: ToolConfig = ToolConfig()
    configs: Mapping[str, ToolConfig] = field(default_factory=dict)
    allowed_tools: frozenset[str] | None = None  # tool_configuration.allowed_tools
    pinned: tuple[McpToolDef, ...] | None = None  # a listing the request carries

    @property
    def managed(self) -> bool:
        return self.url is None

    def config_for(self, tool: str) -> ToolConfig:
        if self.allowed_tools is not None and tool not in self.allowed_tools:
            return ToolConfig(enabled=False)
        return self.configs.get(tool, self.default)

    @property
    def may_offer_tools(self) -> bool:
        if self.allowed_tools is not None and not self.allowed_tools:
            return False
        return self.default.enabled or any(c.enabled for c in self.configs.values())


@dataclass(frozen=True, slots=True)
class McpPlan:
    servers: tuple[ServerPlan, ...]
    # Whether the client reads `mcp_tool_listing` blocks (beta mcp-client-2026-09-15).
    emit_listing: bool = False

    @property
    def secrets(self) -> list[str]:
        """Authorization tokens: scrub them from anything logged or shown."""
        return [s.authorization_token for s in self.servers if s.authorization_token]


class ManagedServers(Protocol):
    """What the parser and the toolsets need from the managed-server manager."""

    def permits(self, name: str, key_id: str) -> bool:
        """Whether a managed server of that name exists and this key may use it."""
        ...

    def attached_for(self, key_id: str) -> list[str]:
        """Managed servers attached to every request of this key."""
        ...

    async def backend_for(self, name: str) -> McpBackend:
        """A ready backend (cached listing + calls); GatewayError when it cannot be had."""
        ...


class McpBackend(Protocol):
    async def list_tools(self) -> list[McpToolDef]: ...

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> CallResult: ...


def uses_mcp(body: Mapping[str, Any]) -> bool:
    """Whether a request declares MCP servers or toolsets (cheap: the plain-path check)."""
    if body.get("mcp_servers"):
        return True
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, Mapping) and t.get("type") == _TOOLSET for t in tools)


def parse_mcp_request(
    body: Mapping[str, Any],
    *,
    betas: Collection[str] = (),
    key_id: str = "anonymous",
    managed: ManagedServers | None = None,
) -> McpPlan | None:
    """The request's MCP plan, or None when it uses no MCP server (the plain path)."""
    attached = managed.attached_for(key_id) if managed is not None else []
    if not attached and not uses_mcp(body):
        return None
    declared = _parse_servers(body.get("mcp_servers"))
    toolsets = _parse_toolsets(body.get("tools"))
    listings = _listings_from_messages(body.get("messages"))
    servers: dict[str, ServerPlan] = dict(declared)
    for name, (path, _toolset) in toolsets.items():
        if name not in servers:
            if managed is None or not managed.permits(name, key_id):
                raise InvalidRequest(
                    f"{path}.mcp_server_name: MCP server '{name}' is not defined in "
                    "mcp_servers (and is not a managed server this key may use)")
            servers[name] = ServerPlan(name=name, url=None)
    for name in attached:
        if name not in servers and managed is not None and managed.permits(name, key_id):
            servers[name] = ServerPlan(name=name, url=None)
    plans = []
    for name, server in servers.items():
        toolset = toolsets[name][1] if name in toolsets else None
        pinned = listings.get(name)
        if toolset is not None and toolset.pinned is not None:
            pinned = toolset.pinned
        plans.append(dataclasses.replace(
            server,
            default=toolset.default if toolset is not None else server.default,
            configs=toolset.configs if toolset is not None else server.configs,
            pinned=pinned))
    return McpPlan(tuple(plans), emit_listing=LISTING_BETA in betas)


def strip_mcp(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request without what the gateway consumes itself: `mcp_servers`, `mcp_toolset`
    tools and `mcp_tool_listing` blocks (the upstream model never sees them)."""
    out = {k: v for k, v in body.items() if k != "mcp_servers"}
    tools = body.get("tools")
    if isinstance(tools, list):
        out["tools"] = [t for t in tools if not (isinstance(t, Mapping)
                                                  and t.get("type") == _TOOLSET)]
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [_without_listings(m) for m in messages]
    return out


def _without_listings(message: Any) -> Any:
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        return message
    content = message["content"]
    kept = [b for b in content if not (isinstance(b, Mapping)
                                       and b.get("type") == "mcp_tool_listing")]
    return message if len(kept) == len(content) else {**message, "content": kept}


# -- validation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Toolset:
    default: ToolConfig
    configs: Mapping[str, ToolConfig]
    pinned: tuple[McpToolDef, ...] | None


def _parse_servers(raw: Any) -> dict[str, ServerPlan]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InvalidRequest("mcp_servers: Input should be a valid list")
    servers: dict[str, ServerPlan] = {}
    for index, entry in enumerate(raw):
        path = f"mcp_servers.{index}"
        if not isinstance(entry, Mapping):
            raise InvalidRequest(f"{path}: Input should be an object")
        name = _required_str(entry, "name", path)
        label = f"{path} (MCP server '{name}')"
        kind = entry.get("type", "url")
        if kind != "url":
            raise InvalidRequest(f"{label}.type: Input should be 'url', got {kind!r}")
        url = _required_str(entry, "url", label)
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidRequest(f"{label}.url: MCP server '{name}' needs an http or https URL")
        token = entry.get("authorization_token")
        if token is not None and not isinstance(token, str):
            raise InvalidRequest(f"{label}.authorization_token: Input should be a valid string")
        enabled, allowed = _tool_configuration(entry.get("tool_configuration"), label)
        if name in servers:
            raise InvalidRequest(f"{path}.name: duplicate MCP server name '{name}'")
        servers[name] = ServerPlan(name=name, url=url, authorization_token=token or None,
                                   default=ToolConfig(enabled=enabled),
                                   allowed_tools=allowed)
    return servers


def _tool_configuration(raw: Any, label: str) -> tuple[bool, frozenset[str] | None]:
    if raw is None:
        return True, None
    path = f"{label}.tool_configuration"
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{path}: Input should be an object")
    enabled = _optional_bool(raw, "enabled", path, True)
    allowed = raw.get("allowed_tools")
    if allowed is None:
        return enabled, None
    if not isinstance(allowed, list) or not all(isinstance(t, str) for t in allowed):
        raise InvalidRequest(f"{path}.allowed_tools: Input should be a list of tool names")
    return enabled, frozenset(allowed)


def _parse_toolsets(raw: Any) -> dict[str, tuple[str, _Toolset]]:
    if not isinstance(raw, list):
        return {}
    toolsets: dict[str, tuple[str, _Toolset]] = {}
    for index, tool in enumerate(raw):
        if not isinstance(tool, Mapping) or tool.get("type") != _TOOLSET:
            continue
        path = f"tools.{index}"
        name = _required_str(tool, "mcp_server_name", path)
        if name in toolsets:
            raise InvalidRequest(f"{path}: duplicate mcp_toolset for MCP server '{name}' "
                                 f"(already at {toolsets[name][0]})")
        default = _tool_config(tool.get("default_config"), f"{path}.default_config",
                               ToolConfig())
        configs_raw = tool.get("configs")
        configs: dict[str, ToolConfig] = {}
        if configs_raw is not None:
            if not isinstance(configs_raw, Mapping):
                raise InvalidRequest(f"{path}.configs: Input should be an object keyed by "
                                     "tool name")
            for tool_name, config in configs_raw.items():
                configs[str(tool_name)] = _tool_config(config, f"{path}.configs.{tool_name}",
                                                       default)
        pinned = None
        if tool.get("tools") is not None:
            pinned = _tool_defs(tool["tools"], f"{path}.tools")
        toolsets[name] = (path, _Toolset(default, configs, pinned))
    return toolsets


def _tool_config(raw: Any, path: str, base: ToolConfig) -> ToolConfig:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{path}: Input should be an object")
    return ToolConfig(enabled=_optional_bool(raw, "enabled", path, base.enabled),
                      defer_loading=_optional_bool(raw, "defer_loading", path,
                                                   base.defer_loading))


def _tool_defs(raw: Any, path: str) -> tuple[McpToolDef, ...]:
    if not isinstance(raw, list):
        raise InvalidRequest(f"{path}: Input should be a list of tools")
    defs = []
    for index, item in enumerate(raw):
        where = f"{path}.{index}"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{where}: Input should be an object")
        name = _required_str(item, "name", where)
        schema = item.get("input_schema")
        if not isinstance(schema, Mapping):
            raise InvalidRequest(f"{where}.input_schema: Input should be an object")
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise InvalidRequest(f"{where}.description: Input should be a valid string")
        defs.append(McpToolDef(name, description, dict(schema)))
    return tuple(defs)


def _listings_from_messages(messages: Any) -> dict[str, tuple[McpToolDef, ...]]:
    """`mcp_tool_listing` blocks of earlier assistant turns; the latest per server wins."""
    listings: dict[str, tuple[McpToolDef, ...]] = {}
    if not isinstance(messages, list):
        return listings
    for m_index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
            continue
        for b_index, block in enumerate(message["content"]):
            if isinstance(block, Mapping) and block.get("type") == "mcp_tool_listing":
                path = f"messages.{m_index}.content.{b_index}"
                name = _required_str(block, "mcp_server_name", path)
                listings[name] = _tool_defs(block.get("tools"), f"{path}.tools")
    return listings


def _required_str(entry: Mapping[str, Any], key: str, path: str) -> str:
    value = entry.get(key)
    if value is None:
        raise InvalidRequest(f"{path}.{key}: Field required")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{path}.{key}: Input should be a non-empty string")
    return value


def _optional_bool(entry: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = entry.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{path}.{key}: Input should be a valid boolean")
    return value
