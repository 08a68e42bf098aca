"""The admin API (admin key): managed MCP servers and `/tool-metrics`.

GET  /admin/mcp/servers                  every managed server's state
GET  /admin/mcp/servers/{name}           status (starting|healthy|unhealthy|backoff|stopped),
                                         pid, restarts, last_error, ...
GET  /admin/mcp/servers/{name}/tools     the tools it listed
POST /admin/mcp/servers/{name}/restart   restart now (no backoff wait); 202
GET  /tool-metrics                       per tool: calls, errors by code, p50/p95 ms
"""

from __future__ import annotations

from ..errors import GatewayError, NotFound
from ..http import Request, Response, json_response
from ..tools.mcp_manager import ManagedServer, McpManager
from ..tools.tool_metrics import ToolMetrics

_SERVERS = "/admin/mcp/servers"


def handles(path: str) -> bool:
    return path == "/tool-metrics" or path == "/admin/mcp" or path.startswith("/admin/mcp/")


def dispatch(
    request: Request, path: str, manager: McpManager | None, metrics: ToolMetrics
) -> Response:
    """`path` without a trailing slash; the admin key was checked by the app."""
    method = request.method
    if path == "/tool-metrics":
        _only(method, "GET", path)
        return json_response(metrics.snapshot())
    if path == _SERVERS:
        _only(method, "GET", path)
        return json_response({"data": manager.info() if manager is not None else []})
    if path.startswith(_SERVERS + "/"):
        name, _, action = path[len(_SERVERS) + 1:].partition("/")
        server = _server(manager, name)
        if action == "":
            _only(method, "GET", path)
            return json_response(server.info())
        if action == "tools":
            _only(method, "GET", path)
            tools = [t.to_json() for t in server.tools or []]
            return json_response({"server": name, "status": server.status, "data": tools})
        if action == "restart":
            _only(method, "POST", path)
            server.restart()
            return json_response({"name": name, "restarting": True, **server.info()},
                                 status=202)
    raise NotFound(f"not found: {method} {request.path}")


def _server(manager: McpManager | None, name: str) -> ManagedServer:
    server = manager.get(name) if manager is not None else None
    if server is None:
        raise NotFound(f"no managed MCP server is called {name!r}")
    return server


def _only(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise GatewayError(f"method {method} is not allowed on {path}", status=405,
                           error_type="invalid_request_error")
