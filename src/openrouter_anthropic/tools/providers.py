"""The gateway's tool loop and its built-in providers, from the settings.

web_search and web_fetch are registered here (unless `enabled: false`). Other families
register their `ToolProvider` on the returned loop's registry
(`gateway.tool_loop.registry.register(...)`) before the gateway serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .code_execution import CodeExecution, CodeExecutionProvider
from .config import ServerToolsConfig
from .loop import ToolLoop
from .registry import ToolRegistry
from .seal import Sealer
from .web_fetch import WebFetchProvider
from .web_search import WebSearchProvider, make_backend

if TYPE_CHECKING:
    from ..gateway import Gateway


def build_tool_loop(gateway: Gateway) -> ToolLoop:
    settings = gateway.settings
    config = ServerToolsConfig.parse(settings.server_tools, settings.openrouter_api_key)
    registry = ToolRegistry()
    if config.web_search.enabled:
        registry.register(WebSearchProvider(
            config.web_search, make_backend(config.web_search, gateway.upstream),
            Sealer(config.secret)))
    if config.web_fetch.enabled:
        registry.register(WebFetchProvider(config.web_fetch))
    # Registered even when off, so a declaration gets a 400 that says it is not enabled.
    registry.register(CodeExecutionProvider(CodeExecution.from_settings(settings.server_tools)))
    return ToolLoop(gateway, registry, config.max_iterations)
