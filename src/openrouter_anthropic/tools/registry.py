"""Which gateway-run tools exist, and which of them a request declares.

A `ToolProvider` owns one family of tools (web_search, web_fetch, code_execution, an MCP
connector...). It names the declaration types it accepts, turns one request's declarations
into `Tool`s (`open`, async: an MCP connector connects there), and renders its result blocks
for the model when a client sends them back (`replay_text`). The registry routes: a request
takes the tool loop only when it declares something a provider claims (`claims`, a cheap
scan); everything else stays on the plain path.

To plug in a family, implement `ToolProvider` and register it in `build_registry` (or call
`gateway.tool_loop.registry.register(provider)` before serving).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidRequest
from ..translate.content import server_echo_text
from .base import Tool, ToolContext


@dataclass(frozen=True, slots=True)
class Declaration:
    path: str  # where it sits in the request, for error messages: "tools.2"
    tool: Mapping[str, Any]  # as the client sent it


class Toolset(Protocol):
    """The tools one provider offers to one request; closed when the request ends."""

    tools: Sequence[Tool]

    async def close(self) -> None: ...


@dataclass(slots=True)
class StaticToolset:
    tools: Sequence[Tool] = field(default_factory=list)

    async def close(self) -> None:
        return None


class ToolProvider(Protocol):
    name: str  # "web_search", "mcp"...: for messages and metrics
    # Exact declaration `type`s accepted, e.g. {"web_search_20250305", "web_search_20260209"}.
    tool_types: frozenset[str]
    # Family prefixes, e.g. ("web_search_",): a declared type with one of these prefixes but
    # not in tool_types is an unknown version (400 naming it), not a client tool.
    type_prefixes: tuple[str, ...]
    # Top-level request fields that route a request to this provider even without a
    # declaration in `tools` (the MCP connector: ("mcp_servers",)).
    request_fields: tuple[str, ...]
    # Result block types this provider renders for the model on replay.
    result_types: frozenset[str]

    async def open(self, declarations: Sequence[Declaration], request: Mapping[str, Any],
                   ctx: ToolContext) -> Toolset:
        """Validate this request's declarations (InvalidRequest naming `path` for a bad
        one) and return its tools. Called once per request, also with no declarations when
        only a `request_fields` entry is present."""
        ...

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        """(the text the model reads, is_error) for a result block from an earlier turn."""
        ...


class ToolRegistry:
    def __init__(self) -> None:
        self._providers: list[ToolProvider] = []
        self._by_type: dict[str, ToolProvider] = {}
        self._by_result: dict[str, ToolProvider] = {}
        self._prefixes: tuple[str, ...] = ()
        self._fields: tuple[str, ...] = ()
        # Keys whose every request a provider serves (managed MCP servers attached to a
        # key), per provider index; "*" stands for every key. Empty: the plain path's check
        # costs one falsy test.
        self._attached: dict[int, frozenset[str]] = {}
        self._attached_keys: frozenset[str] = frozenset()

    def attach(self, provider: ToolProvider, key_ids: Collection[str]) -> None:
        """Requests of these key ids ("*": every key) take the loop and open `provider`
        even when they declare nothing (a managed MCP server attached to a key)."""
        index = self._providers.index(provider)
        keys = self._attached.get(index, frozenset()) | frozenset(key_ids)
        if keys:
            self._attached[index] = keys
        self._attached_keys = frozenset().union(*self._attached.values())

    def register(self, provider: ToolProvider) -> None:
        for kind in provider.tool_types:
            if kind in self._by_type:
                raise ValueError(f"tool type {kind!r} is registered twice")
            self._by_type[kind] = provider
        for kind in provider.result_types:
            self._by_result[kind] = provider
        self._providers.append(provider)
        self._prefixes = (*self._prefixes, *provider.type_prefixes, *provider.tool_types)
        self._fields = (*self._fields, *provider.request_fields)

    @property
    def providers(self) -> Sequence[ToolProvider]:
        return tuple(self._providers)

    @property
    def request_fields(self) -> tuple[str, ...]:
        return self._fields

    def claims(self, body: Mapping[str, Any], key_id: str | None = None) -> bool:
        """Whether the request declares a gateway-run tool, or its key has one attached
        (the plain path's only cost: a dict lookup per declared tool, no allocation)."""
        tools = body.get("tools")
        if tools and self._prefixes and type(tools) is list:
            prefixes = self._prefixes
            for tool in tools:
                if type(tool) is dict:
                    kind = tool.get("type")
                    if type(kind) is str and kind.startswith(prefixes):
                        return True
        # A loop, not any(genexpr): no generator per request on the plain path.
        for name in self._fields:
            if body.get(name) is not None:
                return True
        attached = self._attached_keys
        return bool(attached) and ("*" in attached or key_id in attached)

    def split(self, tools: Any) -> tuple[list[Any], dict[int, list[Declaration]]]:
        """(client tools, declarations per provider index); 400 for unknown versions."""
        client: list[Any] = []
        claimed: dict[int, list[Declaration]] = {}
        if tools is None:
            return client, claimed
        if not isinstance(tools, list):
            raise InvalidRequest("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, Mapping) else None
            provider = self._by_type.get(kind) if isinstance(kind, str) else None
            if provider is None:
                family = self._family(kind)
                if family is not None:
                    known = ", ".join(sorted(family.tool_types))
                    raise InvalidRequest(
                        f"tools.{i}.type: unknown version {kind!r} of the {family.name} tool "
                        f"(this gateway supports: {known})")
                client.append(tool)
                continue
            index = self._providers.index(provider)
            claimed.setdefault(index, []).append(Declaration(f"tools.{i}", tool))
        return client, claimed

    def _family(self, kind: Any) -> ToolProvider | None:
        if not isinstance(kind, str):
            return None
        for provider in self._providers:
            if kind.startswith(provider.type_prefixes):
                return provider
        return None

    async def open(self, body: Mapping[str, Any], ctx: ToolContext
                   ) -> tuple[list[Any], list[Toolset]]:
        """(client tools, one open toolset per provider involved)."""
        client, claimed = self.split(body.get("tools"))
        toolsets: list[Toolset] = []
        try:
            for index, provider in enumerate(self._providers):
                declarations = claimed.get(index)
                attached = self._attached.get(index)
                if declarations is None and not any(
                        body.get(name) is not None for name in provider.request_fields) and (
                        attached is None
                        or ("*" not in attached and ctx.key_id not in attached)):
                    continue
                toolsets.append(await provider.open(declarations or [], body, ctx))
        except BaseException:
            for toolset in toolsets:
                await toolset.close()
            raise
        return client, toolsets

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        provider = self._by_result.get(str(block.get("type")))
        if provider is not None:
            return provider.replay_text(block)
        is_error = block.get("is_error") is True or _has_error_content(block)
        return server_echo_text(block), is_error


def _has_error_content(block: Mapping[str, Any]) -> bool:
    content = block.get("content")
    return isinstance(content, Mapping) and str(content.get("type", "")).endswith("_error")
