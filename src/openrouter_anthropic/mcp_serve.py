"""`openrouter-anthropic mcp-serve`: the workspace toolset as an MCP server for any MCP
client (Claude Code, Claude Desktop, an agent framework), over stdio (the default) or
streamable HTTP on loopback, with the official `mcp` SDK.

The tools are the gateway's own (tools/workspace.py): the same root checks, the same
sandboxed Bash. WebFetch and WebSearch need the gateway's server tools and are not served.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .tools.base import ToolContext
from .tools.workspace import WORKSPACE_SERVER, WorkspaceProfile, WorkspaceToolset
from .tools.workspace_bash import DEFAULT_ALLOW, BashPolicy
from .tools.workspace_schemas import TOOL_NAMES

_NEEDS_GATEWAY = ("WebFetch", "WebSearch")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openrouter-anthropic mcp-serve",
        description="Serve the workspace tools (Read, Write, Edit, Bash, ...) over MCP.")
    parser.add_argument("--root", required=True, help="the workspace directory")
    parser.add_argument("--tools", help="comma-separated tools to serve (default: all of "
                        f"{', '.join(t for t in TOOL_NAMES if t not in _NEEDS_GATEWAY)})")
    parser.add_argument("--http", action="store_true",
                        help="serve streamable HTTP on 127.0.0.1 instead of stdio")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parser.add_argument("--bash-allow", help="comma-separated commands Bash may run, or * "
                        "for any (default: a set of file, text and dev tools)")
    parser.add_argument("--bash-network", action="store_true",
                        help="let Bash commands use the network (default: none)")
    args = parser.parse_args(list(argv))
    try:
        toolset = build_toolset(args.root, args.tools, args.bash_allow, args.bash_network)
    except (ValueError, OSError) as exc:
        print(f"openrouter-anthropic mcp-serve: {exc}", file=sys.stderr)
        return 2
    if args.http:
        return _serve_http(toolset, args.port)
    import anyio

    anyio.run(_serve_stdio, toolset)
    return 0


def build_toolset(root: str, tools: str | None, bash_allow: str | None,
                  bash_network: bool) -> WorkspaceToolset:
    if not Path(root).is_dir():
        raise ValueError(f"--root {root} is not a directory")
    names = tuple(t.strip() for t in (tools or "").split(",") if t.strip()) or tuple(
        t for t in TOOL_NAMES if t not in _NEEDS_GATEWAY)
    unknown = [t for t in names if t not in TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)} (known: {', '.join(TOOL_NAMES)})")
    offline = [t for t in names if t in _NEEDS_GATEWAY]
    if offline:
        raise ValueError(f"{', '.join(offline)} need the gateway's web tools; "
                         "mcp-serve cannot serve them")
    allow = tuple(c.strip() for c in bash_allow.split(",") if c.strip()) \
        if bash_allow else DEFAULT_ALLOW
    profile = WorkspaceProfile(name="mcp-serve", root=Path(root).resolve(), tools=names,
                               bash=BashPolicy(allow=allow, network=bash_network))
    return WorkspaceToolset(profile)


def build_server(toolset: WorkspaceToolset) -> Any:
    """An `mcp` SDK low-level server whose tools are the toolset's."""
    import mcp_types as types
    from mcp.server import Server

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=spec.client_name, description=spec.description,
                       input_schema=dict(spec.input_schema))
            for spec in toolset.list_tools()])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        ctx = ToolContext(request_id="mcp_" + secrets.token_hex(8), key_id="mcp-serve")
        outcome = await toolset.call(params.name, params.arguments or {}, ctx)
        return types.CallToolResult(content=[types.TextContent(text=outcome.model_text)],
                                    is_error=outcome.is_error)

    return Server(WORKSPACE_SERVER, version=__version__, on_list_tools=list_tools,
                  on_call_tool=call_tool,
                  instructions=f"Tools over the workspace {toolset.root.path}; paths must "
                               "stay inside it.")


async def _serve_stdio(toolset: WorkspaceToolset) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(toolset)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _serve_http(toolset: WorkspaceToolset, port: int) -> int:
    import uvicorn

    app = build_server(toolset).streamable_http_app(host="127.0.0.1")
    print(f"openrouter-anthropic mcp-serve: http://127.0.0.1:{port}/mcp serving "
          f"{toolset.root.path}", file=sys.stderr)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0
