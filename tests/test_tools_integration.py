"""Code execution and the built-in workspace server, through the real app and the tool loop:
the model (the fake upstream) calls them, the gateway runs them and answers with Anthropic's
result blocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic

from conftest import chat_requests
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply
from tools_servers import PageServer, serve_app


def call(name: str, arguments: str) -> dict[str, str]:
    return {"id": f"call_{name}", "name": name, "arguments": arguments}


def beta_client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)


def test_code_execution_runs_in_the_sandbox(make_gateway: Callable[..., str],
                                            fake: FakeOpenRouter) -> None:
    url = make_gateway(server_tools={"code_execution": {"enabled": True}})
    fake.script(Reply(tool_calls=[call("code_execution", '{"code": "print(6 * 7)"}')]),
                Reply(text="It printed 42."))
    message = beta_client(url).messages.create(
        model="big", max_tokens=500,
        tools=[{"type": "code_execution_20250522", "name": "code_execution"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "compute 6*7"}])
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "code_execution_tool_result", "text"], kinds
    result: Any = message.content[1]
    assert result.content.stdout == "42\n"
    assert result.content.return_code == 0
    assert message.container is not None and message.container.id
    # The model saw the output in its tool message.
    second = chat_requests(fake)[-1]["messages"]
    assert any(m["role"] == "tool" and "42" in str(m["content"]) for m in second)


def test_code_execution_off_by_default_is_a_clear_400(make_gateway: Callable[..., str],
                                                      fake: FakeOpenRouter) -> None:
    url = make_gateway()
    try:
        beta_client(url).messages.create(
            model="big", max_tokens=50,
            tools=[{"type": "code_execution_20250522", "name": "code_execution"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "x"}])
    except anthropic.BadRequestError as exc:
        assert "code execution is not enabled" in str(exc)
    else:
        raise AssertionError("expected a 400")
    assert chat_requests(fake) == []


def test_workspace_server_writes_inside_its_root(make_gateway: Callable[..., str],
                                                 fake: FakeOpenRouter, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    url = make_gateway(workspace={"root": str(root)})
    target = root / "note.txt"
    fake.script(
        Reply(tool_calls=[call("workspace__Write",
                               f'{{"file_path": "{target}", "content": "from the model"}}')]),
        Reply(tool_calls=[call("workspace__Write",
                               '{"file_path": "/etc/evil.txt", "content": "x"}')]),
        Reply(text="Wrote the note."))
    client = beta_client(url)
    message = client.beta.messages.create(
        model="big", max_tokens=500, betas=["mcp-client-2025-11-20"],
        tools=[{"type": "mcp_toolset", "mcp_server_name": "workspace"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "write a note"}])
    kinds = [block.type for block in message.content]
    assert kinds == ["mcp_tool_use", "mcp_tool_result", "mcp_tool_use", "mcp_tool_result",
                     "text"], kinds
    assert target.read_text() == "from the model"
    refused: Any = message.content[3]
    assert refused.is_error is True
    assert not Path("/etc/evil.txt").exists()


def test_workspace_webfetch_runs_through_the_gateways_web_fetch(
        make_gateway: Callable[..., str], fake: FakeOpenRouter, tmp_path: Path) -> None:
    pages = PageServer()
    with serve_app(pages.app()) as port:
        pages.port = port
        page = f"http://127.0.0.1:{port}/text"
        url = make_gateway(workspace={"root": str(tmp_path)}, server_tools={
            "web_fetch": {"allow_private": [f"127.0.0.1:{port}"]}})
        fake.script(
            Reply(tool_calls=[call("workspace__WebFetch",
                                   f'{{"url": "{page}", "prompt": "summarise"}}')]),
            Reply(text="Fetched."))
        message = beta_client(url).beta.messages.create(
            model="big", max_tokens=500, betas=["mcp-client-2025-11-20"],
            tools=[{"type": "mcp_toolset", "mcp_server_name": "workspace"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": f"fetch {page}"}])
    result: Any = message.content[1]
    assert result.type == "mcp_tool_result" and result.is_error is False, result
    assert "Plain text body." in result.content[0].text
    assert pages.hits == ["/text"]
