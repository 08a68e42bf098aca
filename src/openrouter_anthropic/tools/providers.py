"""The gateway's tool loop and its built-in providers, from the settings.

web_search and web_fetch are registered here (unless `enabled: false`). Other families
register their `ToolProvider` on the returned loop's registry
(`gateway.tool_loop.registry.register(...)`) before the gateway serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .base import ToolContext, ToolOutcome
from .code_execution import CodeExecution, CodeExecutionProvider
from .config import ServerToolsConfig
from .loop import ToolLoop
from .registry import Declaration, ToolProvider, ToolRegistry
from .seal import Sealer
from .web_fetch import WebFetchProvider
from .web_search import WebSearchProvider, make_backend
from .workspace import WebDelegate

if TYPE_CHECKING:
    from ..gateway import Gateway


def build_tool_loop(gateway: Gateway) -> ToolLoop:
    settings = gateway.settings
    config = ServerToolsConfig.parse(settings.server_tools, settings.openrouter_api_key)
    registry = ToolRegistry()
    web: dict[str, Any] = {}
    if config.web_search.enabled:
        web["web_search"] = WebSearchProvider(
            config.web_search, make_backend(config.web_search, gateway.upstream),
            Sealer(config.secret))
        registry.register(web["web_search"])
    if config.web_fetch.enabled:
        web["web_fetch"] = WebFetchProvider(config.web_fetch)
        registry.register(web["web_fetch"])
    # Registered even when off, so a declaration gets a 400 that says it is not enabled.
    registry.register(CodeExecutionProvider(CodeExecution.from_settings(settings.server_tools)))
    loop = ToolLoop(gateway, registry, config.max_iterations)
    # The workspace toolset's WebFetch/WebSearch run through these same server tools.
    loop.web_delegates = {name: _delegate(provider, name) for name, provider in web.items()}
    return loop


_DELEGATED_TYPES = {"web_fetch": "web_fetch_20250910", "web_search": "web_search_20250305"}


def _delegate(provider: ToolProvider, name: str) -> WebDelegate:
    """A server tool as a callable for the workspace's WebFetch/WebSearch."""
    declaration = Declaration(f"workspace.{name}", {"type": _DELEGATED_TYPES[name],
                                                    "name": name})

    async def run(tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        toolset = await provider.open([declaration], {}, ctx)
        try:
            arguments = {"url": tool_input.get("url")} if name == "web_fetch" else \
                {"query": tool_input.get("query")}
            return await toolset.tools[0].run(arguments, ctx)
        finally:
            await toolset.close()

    return run
