"""`openrouter-anthropic mcp-serve`: the workspace toolset served over MCP, driven by the
official `mcp` SDK's client over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from openrouter_anthropic.cli import main as cli_main
from openrouter_anthropic.tools.workspace_schemas import SCHEMAS
from sandbox_support import require_sandbox, sandbox_owned, shared_tmpdir

SERVED = ["Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "LS", "Bash", "TodoWrite",
          "NotebookRead", "NotebookEdit"]


@pytest.fixture
def root() -> Iterator[Path]:
    require_sandbox()
    with shared_tmpdir("oa-mcp-serve-") as base:
        path = base / "ws"
        path.mkdir()
        sandbox_owned(path)
        (path / "hello.txt").write_text("hello from the workspace\n")
        yield path


def serve_command(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "openrouter_anthropic", "mcp-serve", "--root", str(root),
            *extra]


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


async def exercise(client: Client, root: Path) -> None:
    listed = (await client.list_tools()).tools
    assert [t.name for t in listed] == SERVED
    read = next(t for t in listed if t.name == "Read")
    assert read.input_schema["properties"] == SCHEMAS["Read"]["properties"]

    result = await client.call_tool("Read", {"file_path": str(root / "hello.txt")})
    assert not result.is_error and text_of(result) == "     1\thello from the workspace"
    result = await client.call_tool("Write", {"file_path": str(root / "sub" / "new.txt"),
                                              "content": "written over MCP"})
    assert not result.is_error and (root / "sub" / "new.txt").read_text() == "written over MCP"
    result = await client.call_tool("Bash", {"command": "cat sub/new.txt; echo; ls"})
    assert not result.is_error, text_of(result)
    assert text_of(result).split("\n") == ["written over MCP", "hello.txt", "sub"]

    refused = await client.call_tool("Read", {"file_path": "/etc/passwd"})
    assert refused.is_error and "outside the workspace" in text_of(refused)
    refused = await client.call_tool("Bash", {"command": "curl http://example.com"})
    assert refused.is_error and "not allowed" in text_of(refused)


async def test_stdio(root: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=serve_command(root)[1:])
    async with Client(params) as client:
        await exercise(client, root)


async def test_stdio_serves_only_the_tools_asked_for(root: Path) -> None:
    params = StdioServerParameters(command=sys.executable,
                                   args=serve_command(root, "--tools", "Read,Grep")[1:])
    async with Client(params) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["Read", "Grep"]
        result = await client.call_tool("Grep", {"pattern": "hello"})
        assert text_of(result) == f"Found 1 file\n{root / 'hello.txt'}"
        result = await client.call_tool("Write", {"file_path": "x", "content": "y"})
        assert result.is_error


@pytest.fixture
async def http_server(root: Path) -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *serve_command(root, "--http", "--port", str(port)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError("mcp-serve --http did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_streamable_http(http_server: str, root: Path) -> None:
    async with Client(http_server) as client:
        await exercise(client, root)


def test_command_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["mcp-serve", "--root", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli_main(["mcp-serve", "--root", str(tmp_path), "--tools", "Read,Rm"]) == 2
    assert "unknown tool(s) Rm" in capsys.readouterr().err
    assert cli_main(["mcp-serve", "--root", str(tmp_path), "--tools", "WebFetch"]) == 2
    assert "need the gateway" in capsys.readouterr().err
