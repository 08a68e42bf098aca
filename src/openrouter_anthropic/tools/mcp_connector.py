"""The MCP connector: a request's MCP plan (mcp_plan.py) as toolsets the tool loop offers
to the model and calls, and the `ToolProvider` that plugs them into the loop.

`open_mcp_tools` connects and lists tools, concurrently (a URL the SSRF guard refuses, a
rejected token, an unreachable server or one that does not speak MCP is a 400 naming the
server) and returns `McpTools`: one `McpTool` (tools/base.py `Tool`) per enabled tool,
offered as the function `<server>__<tool>` (translate/tools.py shortens names over 64
characters and maps them back), shown to the client as `mcp_tool_use`. A failed call is an
`is_error` result, never an exception: the model is told and the loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError, InvalidRequest
from ..settings import Settings, SettingsError
from .base import MCP_TOOL_USE, Tool, ToolContext, ToolOutcome, ToolSpec
from .mcp_plan import ManagedServers, McpBackend, McpPlan, ServerPlan, parse_mcp_request
from .mcp_session import HttpEndpoint, McpCallError, McpConnectError, McpToolDef
from .registry import Declaration, StaticToolset, Toolset
from .ssrf import Refused, check_target
from .tool_metrics import ToolMetrics, mcp_tool_metric_name
from .workspace import WORKSPACE_SERVER, WorkspaceMcpBackend, Workspaces

if TYPE_CHECKING:
    from .loop import ToolLoop

# -- function names -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class McpRoute:
    """Where a function the model called goes: the server and the tool's own name."""

    function_name: str
    server_name: str
    tool_name: str

    @property
    def metric_name(self) -> str:
        return mcp_tool_metric_name(self.server_name, self.tool_name)


class FunctionNames:
    """`<server>__<tool>` -> (server, tool), for the functions of one request.

    The function name is the loop's key for a tool, and what it rebuilds from an
    `mcp_tool_use` block of an earlier turn (`server_name` + `__` + `name`). The upstream's
    64-character `[A-Za-z0-9_-]` limit is translate/tools.py's: it shortens a longer name
    deterministically (a hash suffix) and maps the model's calls back, so every request of
    a conversation agrees on the name."""

    def __init__(self) -> None:
        self._routes: dict[str, McpRoute] = {}

    def add(self, server_name: str, tool_name: str) -> McpRoute:
        name = f"{server_name}__{tool_name}"
        taken = self._routes.get(name)
        if taken is not None and (taken.server_name, taken.tool_name) != (server_name,
                                                                          tool_name):
            raise InvalidRequest(
                f"MCP tools '{taken.tool_name}' of server '{taken.server_name}' and "
                f"'{tool_name}' of server '{server_name}' both become the function {name!r}")
        route = McpRoute(name, server_name, tool_name)
        self._routes[name] = route
        return route

    def route(self, function_name: str) -> McpRoute | None:
        return self._routes.get(function_name)


# -- toolsets -------------------------------------------------------------------------


def mcp_result_block(is_error: bool, texts: Sequence[str]) -> dict[str, Any]:
    """`mcp_tool_result` without tool_use_id (the loop adds it)."""
    return {"type": "mcp_tool_result", "is_error": is_error,
            "content": [{"type": "text", "text": t} for t in texts]}


@dataclass(slots=True)
class McpTool:
    """One MCP tool as a gateway-run `Tool` (tools/base.py): what the loop registers."""

    spec: ToolSpec
    toolset: McpToolset
    tool_name: str  # the name on the server (spec.name is the function `<server>__<tool>`)

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        return await self.toolset.call(self.tool_name, tool_input, ctx)


class McpToolset:
    """One MCP server as a request sees it: the tools it offers, and calls to them."""

    def __init__(self, plan: ServerPlan, backend: McpBackend, names: FunctionNames) -> None:
        self.plan = plan
        self.server_name = plan.name
        self._backend = backend
        self._names = names
        pinned = plan.pinned
        self._listing: list[McpToolDef] | None = list(pinned) if pinned is not None else None
        self.fetched_listing = False
        self.tools: list[McpTool] = []
        self.deferred_tools: list[McpTool] = []

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools]

    @property
    def deferred_specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.deferred_tools]

    async def list_tools(self) -> list[ToolSpec]:
        """The functions to offer the model (enabled, not deferred). Fetches the server's
        listing once unless the request pinned one; raises McpConnectError."""
        if self._listing is None:
            self._listing = await self._backend.list_tools()
            self.fetched_listing = True
        self.tools, self.deferred_tools = [], []
        for tool in self._listing:
            config = self.plan.config_for(tool.name)
            if not config.enabled:
                continue
            route = self._names.add(self.server_name, tool.name)
            spec = ToolSpec(route.function_name, tool.description or tool.name,
                            tool.input_schema, block_type=MCP_TOOL_USE,
                            display_name=tool.name, server_name=self.server_name)
            (self.deferred_tools if config.defer_loading else self.tools).append(
                McpTool(spec, self, tool.name))
        return self.specs

    @property
    def listing(self) -> list[McpToolDef]:
        return list(self._listing or [])

    def listing_block(self) -> dict[str, Any]:
        return {"type": "mcp_tool_listing", "mcp_server_name": self.server_name,
                "tools": [t.to_json() for t in self.listing]}

    async def call(self, tool_name: str, tool_input: Mapping[str, Any],
                   ctx: ToolContext) -> ToolOutcome:
        """Run one tool (its MCP name); a failure is an is_error outcome, never raised."""
        if not any(t.tool_name == tool_name for t in (*self.tools, *self.deferred_tools)):
            return _failed("unknown_tool",
                           f"tool '{tool_name}' is not enabled on MCP server "
                           f"'{self.server_name}'")
        try:
            result = await self._backend.call_tool(tool_name, tool_input)
        except McpCallError as exc:
            return _failed(exc.code, f"MCP server '{self.server_name}': {exc.message}")
        texts = list(result.texts)
        return ToolOutcome(
            result_block=mcp_result_block(result.is_error, texts),
            model_text="\n".join(texts) if texts else "(no output)",
            is_error=result.is_error,
            error_code="tool_error" if result.is_error else None,
            counted=False,
        )


def _failed(code: str, message: str) -> ToolOutcome:
    text = f"Error: {message}"
    return ToolOutcome(result_block=mcp_result_block(True, [text]), model_text=text,
                       is_error=True, error_code=code, counted=False)


@dataclass(slots=True)
class McpTools:
    """Every MCP toolset of one request, ready for the loop."""

    toolsets: dict[str, McpToolset]
    names: FunctionNames
    emit_listing: bool = False
    secrets: list[str] = field(default_factory=list)
    # The registry's Toolset: tools to offer, in server order (`Tool`s: spec + run).
    tools: Sequence[Tool] = ()
    # Enabled tools with defer_loading: for tool search, not offered up front.
    deferred_tools: Sequence[Tool] = ()

    def __post_init__(self) -> None:
        self.tools = [tool for ts in self.toolsets.values() for tool in ts.tools]
        self.deferred_tools = [tool for ts in self.toolsets.values()
                               for tool in ts.deferred_tools]

    async def close(self) -> None:
        """Nothing is held between calls (each call opens its own session)."""
        return None

    @property
    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self.tools]

    @property
    def deferred_specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self.deferred_tools]

    def route(self, function_name: str) -> McpRoute | None:
        route = self.names.route(function_name)
        return route if route is not None and route.server_name in self.toolsets else None

    async def call(self, function_name: str, tool_input: Mapping[str, Any],
                   ctx: ToolContext) -> ToolOutcome:
        route = self.route(function_name)
        if route is None:
            return _failed("unknown_tool", f"no MCP tool is called {function_name!r}")
        return await self.toolsets[route.server_name].call(route.tool_name, tool_input, ctx)

    def listing_blocks(self) -> list[dict[str, Any]]:
        """`mcp_tool_listing` blocks for the response: listings fetched in this request,
        when the client declared the beta that reads them."""
        if not self.emit_listing:
            return []
        return [ts.listing_block() for ts in self.toolsets.values() if ts.fetched_listing]


# -- opening --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """`mcp.connector` settings."""

    enabled: bool = True
    allow_private: frozenset[str] = frozenset()  # exact host:port entries
    connect_timeout_s: float = 10.0
    timeout_s: float = 60.0

    @classmethod
    def from_section(cls, mcp: Mapping[str, Any]) -> ConnectorConfig:
        raw = mcp.get("connector")
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise SettingsError("mcp.connector must be a mapping")
        allow = raw.get("allow_private") or []
        if isinstance(allow, str):
            allow = [a.strip() for a in allow.split(",")]
        if not isinstance(allow, Iterable) or not all(isinstance(a, str) for a in allow):
            raise SettingsError("mcp.connector.allow_private must be a list of host:port")
        unknown = sorted(set(raw) - {"enabled", "allow_private", "connect_timeout_s",
                                     "timeout_s"})
        if unknown:
            raise SettingsError(f"mcp.connector: unknown key(s) {', '.join(unknown)}")
        try:
            connect, total = (float(raw.get("connect_timeout_s", 10.0)),
                              float(raw.get("timeout_s", 60.0)))
        except (TypeError, ValueError):
            raise SettingsError("mcp.connector timeouts must be numbers of seconds") from None
        if connect <= 0 or total <= 0:
            raise SettingsError("mcp.connector timeouts must be positive")
        return cls(enabled=bool(raw.get("enabled", True)),
                   allow_private=frozenset(a.strip().lower() for a in allow if a.strip()),
                   connect_timeout_s=connect, timeout_s=total)


async def open_mcp_tools(
    plan: McpPlan,
    config: ConnectorConfig = ConnectorConfig(),
    managed: ManagedServers | None = None,
) -> McpTools:
    """Connect to every server of the plan and list its tools (concurrently).

    Raises InvalidRequest naming the server for a URL the SSRF guard refuses, a rejected
    token, an unreachable server or one that does not speak MCP; GatewayError (529) for a
    managed server that is not up.
    """
    names = FunctionNames()
    toolsets: dict[str, McpToolset] = {}
    for server in plan.servers:
        if not server.may_offer_tools:
            continue
        backend = await _backend(server, config, managed)
        toolsets[server.name] = McpToolset(server, backend, names)
    results = await asyncio.gather(*(ts.list_tools() for ts in toolsets.values()),
                                   return_exceptions=True)
    for toolset, result in zip(toolsets.values(), results, strict=True):
        if isinstance(result, McpConnectError):
            raise _connect_failure(toolset.server_name, result) from None
        if isinstance(result, BaseException):
            raise result
    return McpTools(toolsets, names, emit_listing=plan.emit_listing, secrets=plan.secrets)


async def _backend(server: ServerPlan, config: ConnectorConfig,
                   managed: ManagedServers | None) -> McpBackend:
    if server.url is None:
        if managed is None:
            raise InvalidRequest(f"MCP server '{server.name}' is not defined")
        return await managed.backend_for(server.name)
    if not config.enabled:
        raise InvalidRequest(f"MCP server '{server.name}': the MCP connector is disabled on "
                             "this gateway")
    try:
        pin = await check_target(server.url, config.allow_private)
    except Refused as exc:
        raise InvalidRequest(f"MCP server '{server.name}': URL not allowed ({exc})") from None
    except LookupError as exc:
        raise InvalidRequest(f"Cannot connect to MCP server '{server.name}': {exc}") from None
    headers = {"Authorization": f"Bearer {server.authorization_token}"} \
        if server.authorization_token else {}
    return HttpEndpoint(server.url, headers, pin, connect_timeout=config.connect_timeout_s,
                        timeout=config.timeout_s)


def _connect_failure(name: str, exc: McpConnectError) -> GatewayError:
    if exc.kind == "auth":
        return InvalidRequest(f"Invalid authorization token for MCP server '{name}'")
    if exc.kind == "unreachable":
        return InvalidRequest(f"Cannot connect to MCP server '{name}': connection refused or "
                              "host unreachable")
    if exc.kind == "timeout":
        return InvalidRequest(f"MCP server '{name}' did not respond in time")
    return InvalidRequest(f"MCP server '{name}' failed: {exc.message}")


# -- the loop's provider --------------------------------------------------------------


class McpProvider:
    """The MCP connector and managed servers as a `ToolProvider` of the loop (registry.py):
    a request takes the loop when it has `mcp_servers` or an `mcp_toolset` tool."""

    name = "mcp"
    tool_types = frozenset({"mcp_toolset"})
    type_prefixes: tuple[str, ...] = ("mcp_toolset",)
    request_fields: tuple[str, ...] = ("mcp_servers",)
    result_types = frozenset({"mcp_tool_result"})

    def __init__(self, config: ConnectorConfig = ConnectorConfig(),
                 managed: ManagedServers | None = None,
                 workspaces: Workspaces | None = None) -> None:
        self.config = config
        self.managed = managed
        self.workspaces = workspaces
        self.web_delegates: Mapping[str, Any] = {}

    async def open(self, declarations: Sequence[Declaration], request: Mapping[str, Any],
                   ctx: ToolContext) -> Toolset:
        managed = self.managed
        if self.workspaces is not None and self.workspaces.toolset_for(ctx.key_id):
            managed = _WithWorkspace(managed, self.workspaces, ctx, self.web_delegates)
        plan = parse_mcp_request(request, betas=ctx.betas, key_id=ctx.key_id,
                                 managed=managed)
        if plan is None:
            return StaticToolset([])
        return await open_mcp_tools(plan, self.config, managed)

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        content = block.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\n".join(str(item.get("text", "")) for item in content
                             if isinstance(item, Mapping) and item.get("type") == "text")
        else:
            text = ""
        return text or "(no output)", block.get("is_error") is True


class _WithWorkspace:
    """The managed servers plus the built-in `workspace` server of this request's key.

    The workspace toolset is bound to the request's context (its key decides the root), so
    this view is made per request."""

    def __init__(self, managed: ManagedServers | None, workspaces: Workspaces,
                 ctx: ToolContext, web: Mapping[str, Any]) -> None:
        self._managed = managed
        self._toolset = workspaces.toolset_for(ctx.key_id, web_fetch=web.get("web_fetch"),
                                               web_search=web.get("web_search"))
        self._ctx = ctx

    def permits(self, name: str, key_id: str) -> bool:
        if name == WORKSPACE_SERVER:
            return self._toolset is not None
        return self._managed is not None and self._managed.permits(name, key_id)

    def attached_for(self, key_id: str) -> list[str]:
        return self._managed.attached_for(key_id) if self._managed is not None else []

    async def backend_for(self, name: str) -> McpBackend:
        if name == WORKSPACE_SERVER and self._toolset is not None:
            return WorkspaceMcpBackend(self._toolset, self._ctx)
        if self._managed is None:
            raise InvalidRequest(f"MCP server {name!r} is not configured on this gateway")
        return await self._managed.backend_for(name)


def install_mcp(loop: ToolLoop, settings: Settings, managed: ManagedServers | None,
                metrics: ToolMetrics | None = None,
                workspaces: Workspaces | None = None) -> None:
    """Plug MCP (and the built-in `workspace` server) into a gateway's tool loop, and
    `/tool-metrics` into its calls."""
    provider = McpProvider(ConnectorConfig.from_section(settings.mcp), managed, workspaces)
    provider.web_delegates = loop.web_delegates
    loop.registry.register(provider)
    # Managed servers attached to keys: those keys' requests take the loop without
    # declaring MCP (McpManager.attached_key_ids; other ManagedServers attach nothing).
    attached = getattr(managed, "attached_key_ids", None)
    if attached is not None:
        loop.registry.attach(provider, attached())
    if metrics is not None:
        loop.observers.append(metrics.observe)
