"""MCP through the real app: the Anthropic SDK as client, the fake OpenRouter scripting the
model's calls, and SDK-built MCP servers (streamable HTTP with a bearer token; stdio,
managed by the gateway)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from conftest import MODEL, chat_requests, parse_sse
from mcp_helpers import PYTHON, SERVER_SCRIPT, HttpMcpServer
from mcp_test_server import LONG_TOOL
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, ToolCall
from openrouter_anthropic.translate.tools import upstream_tool_name

TOKEN = "e2e-mcp-token-9d8c7b6a"
ADMIN = "e2e-admin-key"
BETA = "mcp-client-2025-11-20"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., str], mcp_server: HttpMcpServer) -> str:
    return make_gateway(
        admin_api_key=ADMIN,
        mcp={"connector": {"allow_private": [f"127.0.0.1:{mcp_server.port}"]},
             "servers": {"files": {"command": PYTHON, "args": [SERVER_SCRIPT, "stdio"]}}})


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="any", max_retries=0, timeout=20.0)


def servers(url: str, token: str | None = TOKEN) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {"type": "url", "name": "live", "url": url}
    if token is not None:
        entry["authorization_token"] = token
    return [entry]


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(id="call_1", name=name,
                                      arguments=orjson.dumps(arguments).decode())])


def test_a_tool_loop_with_the_connector(fake: FakeOpenRouter, gateway: str,
                                        mcp_server: HttpMcpServer) -> None:
    fake.script(call("live__echo", text="from the tool"), Reply(text="the tool said so"))
    with sdk(gateway) as client:
        message = client.beta.messages.create(
            model=MODEL, max_tokens=256, betas=[BETA],
            messages=[{"role": "user", "content": "use the tool"}],
            mcp_servers=servers(mcp_server.url),  # type: ignore[arg-type]
            tools=[{"type": "mcp_toolset", "mcp_server_name": "live"}])
    use, result, text = message.content
    assert use.type == "mcp_tool_use" and use.id.startswith("mcptoolu_")
    assert (use.name, use.server_name, use.input) == ("echo", "live", {"text": "from the tool"})
    assert result.type == "mcp_tool_result" and result.tool_use_id == use.id
    assert result.is_error is False
    assert [c.text for c in result.content] == ["from the tool"]  # type: ignore[union-attr]
    assert text.type == "text" and text.text == "the tool said so"
    assert message.stop_reason == "end_turn"
    first, second = chat_requests(fake)
    offered = {t["function"]["name"] for t in first["tools"]}
    assert "live__echo" in offered and all(len(n) <= 64 for n in offered)
    assert "mcp_servers" not in first
    assert any(m.get("role") == "tool" and "from the tool" in str(m.get("content"))
               for m in second["messages"])
    assert TOKEN not in str(first) + str(second)


def test_a_long_tool_name_and_a_failing_tool_streamed(fake: FakeOpenRouter, gateway: str,
                                                      mcp_server: HttpMcpServer) -> None:
    long_function = upstream_tool_name(f"live__{LONG_TOOL}")
    assert len(long_function) <= 64
    fake.script(
        Reply(tool_calls=[ToolCall(id="call_a", name=long_function, arguments="{}"),
                          ToolCall(id="call_b", name="live__fail",
                                   arguments='{"reason": "no disk"}')]),
        Reply(text="one worked"))
    body = {"model": MODEL, "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "go"}],
            "mcp_servers": servers(mcp_server.url)}
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        answer = http.post("/v1/messages", json=body,
                           headers={"anthropic-beta": "mcp-client-2025-04-04"})
    assert answer.status_code == 200
    events = parse_sse(answer.text)
    names = [name for name, _ in events]
    assert names.count("message_start") == 1 and names[-1] == "message_stop"
    started = [data["content_block"] for name, data in events
               if name == "content_block_start"]
    uses = [b for b in started if b["type"] == "mcp_tool_use"]
    results = {b["tool_use_id"]: b for b in started if b["type"] == "mcp_tool_result"}
    assert [u["name"] for u in uses] == [LONG_TOOL, "fail"]
    assert all(u["server_name"] == "live" for u in uses)
    assert results[uses[0]["id"]]["content"] == [{"type": "text", "text": "long tool ran"}]
    failed = results[uses[1]["id"]]
    assert failed["is_error"] is True and "no disk" in failed["content"][0]["text"]
    text = "".join(data["delta"].get("text", "") for name, data in events
                   if name == "content_block_delta")
    assert text == "one worked"  # the loop went on after the failure


def test_a_rejected_token_is_400_naming_the_server(fake: FakeOpenRouter, gateway: str,
                                                   mcp_server: HttpMcpServer) -> None:
    bad = "e2e-wrong-token-1a2b3c4d"
    with sdk(gateway) as client, pytest.raises(anthropic.BadRequestError) as info:
        client.beta.messages.create(
            model=MODEL, max_tokens=64, betas=[BETA],
            messages=[{"role": "user", "content": "hi"}],
            mcp_servers=servers(mcp_server.url, bad),  # type: ignore[arg-type]
            tools=[{"type": "mcp_toolset", "mcp_server_name": "live"}])
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": "invalid_request_error",
                             "message": "Invalid authorization token for MCP server 'live'"}
    assert bad not in str(info.value.response.text) and not chat_requests(fake)


@pytest.mark.parametrize(("extra", "expected"), [
    ({"mcp_servers": [{"type": "url", "name": "x", "url": "http://127.0.0.1:9/mcp"}]},
     "MCP server 'x': URL not allowed"),
    ({"mcp_servers": [{"type": "url", "name": "x"}]}, "url: Field required"),
    ({"tools": [{"type": "mcp_toolset", "mcp_server_name": "ghost"}]},
     "MCP server 'ghost' is not defined in mcp_servers"),
])
def test_bad_mcp_requests_are_400(fake: FakeOpenRouter, gateway: str,
                                  extra: dict[str, Any], expected: str) -> None:
    body = {"model": MODEL, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}], **extra}
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        answer = http.post("/v1/messages", json=body)
    assert answer.status_code == 400
    assert expected in answer.json()["error"]["message"]
    assert not chat_requests(fake)


def test_a_managed_server_by_toolset_and_tool_metrics(fake: FakeOpenRouter,
                                                      gateway: str) -> None:
    fake.script(call("files__add", a=20, b=22), Reply(text="42 it is"))
    admin = {"x-api-key": ADMIN}
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        deadline = time.monotonic() + 20
        while http.get("/admin/mcp/servers/files", headers=admin).json()["status"] != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answer = http.post("/v1/messages", json={
            "model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "add"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "files",
                       "default_config": {"enabled": False},
                       "configs": {"add": {"enabled": True}}}]})
        assert answer.status_code == 200, answer.text
        content = answer.json()["content"]
        assert content[0]["type"] == "mcp_tool_use" and content[0]["server_name"] == "files"
        assert content[1]["content"] == [{"type": "text", "text": "42"}]
        offered = [t["function"]["name"] for t in chat_requests(fake)[0]["tools"]]
        assert offered == ["files__add"]
        metrics = http.get("/tool-metrics", headers=admin).json()["tools"]
        assert metrics["mcp:files/add"]["calls"] == 1
        assert metrics["mcp:files/add"]["errors"] == {}
        assert 'ora_tool_calls_total{tool="mcp:files/add"} 1' in http.get(
            "/metrics", headers=admin).text


def test_a_listing_sent_back_in_an_assistant_turn_is_not_rejected(
        fake: FakeOpenRouter, gateway: str, mcp_server: HttpMcpServer) -> None:
    # mcp-client-2026-09-15: the listing of an earlier answer comes back with the turn.
    listed = [{"name": "echo", "description": "Echo", "input_schema": {"type": "object"}}]
    fake.script(call("live__echo", text="again"), Reply(text="done"))
    body = {"model": MODEL, "max_tokens": 64, "mcp_servers": servers(mcp_server.url),
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "mcp_tool_listing", "mcp_server_name": "live", "tools": listed},
                    {"type": "text", "text": "hello"}]},
                {"role": "user", "content": "echo again"}]}
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        answer = http.post("/v1/messages", json=body,
                           headers={"anthropic-beta": "mcp-client-2026-09-15"})
    assert answer.status_code == 200, answer.text
    assert [b["type"] for b in answer.json()["content"]] == [
        "mcp_tool_use", "mcp_tool_result", "text"]
    first, _ = chat_requests(fake)
    assert "mcp_tool_listing" not in str(first["messages"])
    assert [t["function"]["name"] for t in first["tools"]] == ["live__echo"]  # the pinned one


@pytest.mark.parametrize("stream", [False, True])
def test_the_listing_beta_gets_the_fetched_listings_first(
        fake: FakeOpenRouter, gateway: str, mcp_server: HttpMcpServer, stream: bool) -> None:
    fake.script(call("live__echo", text="hey"), Reply(text="done"))
    body = {"model": MODEL, "max_tokens": 64, "stream": stream,
            "mcp_servers": servers(mcp_server.url),
            "messages": [{"role": "user", "content": "hi"}]}
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        answer = http.post("/v1/messages", json=body, headers={
            "anthropic-beta": "mcp-client-2025-11-20, mcp-client-2026-09-15"})
    assert answer.status_code == 200, answer.text
    if stream:
        events = parse_sse(answer.text)
        assert [n for n, _ in events][:2] == ["message_start", "content_block_start"]
        starts = [d for n, d in events if n == "content_block_start"]
        assert [d["index"] for d in starts] == list(range(len(starts)))
        content = [d["content_block"] for d in starts]
    else:
        content = answer.json()["content"]
    listing = content[0]
    assert listing["type"] == "mcp_tool_listing" and listing["mcp_server_name"] == "live"
    assert "echo" in {t["name"] for t in listing["tools"]}
    assert [b["type"] for b in content[1:]] == ["mcp_tool_use", "mcp_tool_result", "text"]
    for request in chat_requests(fake):
        assert "mcp_tool_listing" not in str(request["messages"])
    # Without the beta, no listing.
    fake.script(Reply(text="plain"))
    with httpx2.Client(base_url=gateway, timeout=20.0) as http:
        answer = http.post("/v1/messages", json={**body, "stream": False})
    assert [b["type"] for b in answer.json()["content"]] == ["text"]
