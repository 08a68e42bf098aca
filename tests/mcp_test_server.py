"""An MCP server for the tests, built with the official SDK (`mcp` 2.x).

    python tests/mcp_test_server.py stdio
    python tests/mcp_test_server.py http --port N [--token T] [--path /mcp]

Tools: echo, add, fail (the tool raises: an is_error result), crash (the process exits at
once), slow, whoami (the environment and working directory it runs with), spawn_child (a
`sleep` in the server's process group, for the shutdown test), and one with a
name long enough that `<server>__<tool>` exceeds 64 characters. With --token, every HTTP
request must carry `Authorization: Bearer <token>` or gets 401.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

LONG_TOOL = "summarize_the_quarterly_engineering_report_for_the_platform_team_now"

server = MCPServer("gateway-test", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """Exit the server process at once."""
    sys.stderr.write("crashing on request\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def whoami() -> str:
    """The greeting from the environment, the working directory and the pid."""
    return f"{os.environ.get('MCP_TEST_GREETING', '')}|{os.getcwd()}|{os.getpid()}"


@server.tool()
def spawn_child() -> str:
    """Start a long-lived child process (same process group); returns its pid."""
    child = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(child.pid)


@server.tool(name=LONG_TOOL)
def long_named() -> str:
    """A tool whose name is long."""
    return "long tool ran"


def _guarded(app: Any, token: str | None) -> Any:
    expected = f"Bearer {token}".encode() if token else None

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and expected is not None:
            given = dict(scope["headers"]).get(b"authorization")
            if given != expected:
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer error="invalid_token"')]})
                await send({"type": "http.response.body", "body": b'{"error":"invalid_token"}'})
                return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args()
    sys.stderr.write(f"test server starting pid={os.getpid()}\n")
    sys.stderr.flush()
    if args.transport == "stdio":
        server.run()
        return
    import uvicorn

    app = _guarded(server.streamable_http_app(), args.token)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
