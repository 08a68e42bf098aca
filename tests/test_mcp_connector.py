"""The MCP connector: parsing the three beta shapes, validation errors, function names, and
toolsets against a real MCP server (the official SDK over streamable HTTP, with a bearer
token) on loopback."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_helpers import HttpMcpServer, free_port
from mcp_test_server import LONG_TOOL
from openrouter_anthropic.errors import InvalidRequest
from openrouter_anthropic.settings import SettingsError
from openrouter_anthropic.tools.base import MCP_TOOL_USE, ToolContext
from openrouter_anthropic.tools.mcp_connector import ConnectorConfig, FunctionNames, open_mcp_tools
from openrouter_anthropic.tools.mcp_plan import McpPlan, parse_mcp_request, strip_mcp
from openrouter_anthropic.translate.tools import ToolNames

TOKEN = "mcp-secret-token-5f3a9c1e"
BAD_TOKEN = "mcp-wrong-token-0b7d2e44"
CTX = ToolContext(request_id="req_test", key_id="anonymous")


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(token=TOKEN).start()
    yield server
    server.stop()


def allow(server: HttpMcpServer) -> ConnectorConfig:
    return ConnectorConfig(allow_private=frozenset({f"127.0.0.1:{server.port}"}), timeout_s=10)


def body(servers: list[Any] | None = None, tools: list[Any] | None = None,
         messages: list[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "m", "max_tokens": 16,
                           "messages": messages or [{"role": "user", "content": "hi"}]}
    if servers is not None:
        out["mcp_servers"] = servers
    if tools is not None:
        out["tools"] = tools
    return out


def url_server(name: str = "srv", url: str = "https://mcp.example.com/mcp",
               **extra: Any) -> dict[str, Any]:
    return {"type": "url", "name": name, "url": url, **extra}


def plan_for(request: dict[str, Any], **kw: Any) -> McpPlan:
    plan = parse_mcp_request(request, **kw)
    assert plan is not None
    return plan


def rejected(request: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_mcp_request(request)
    assert info.value.status == 400 and info.value.error_type == "invalid_request_error"
    return info.value.message


# ---------------------------------------------------------------- parsing (no network)

def test_a_request_without_mcp_has_no_plan() -> None:
    assert parse_mcp_request(body()) is None
    assert parse_mcp_request(body(tools=[{"name": "Read", "input_schema": {}}])) is None
    assert parse_mcp_request(body(servers=[])) is None


def test_2025_04_04_servers_with_tool_configuration() -> None:
    plan = plan_for(body(servers=[
        url_server("a", authorization_token=TOKEN,
                   tool_configuration={"enabled": True, "allowed_tools": ["echo"]}),
        url_server("b", tool_configuration={"enabled": False}),
    ]))
    a, b = plan.servers
    assert (a.name, a.url, a.authorization_token) == ("a", "https://mcp.example.com/mcp", TOKEN)
    assert a.config_for("echo").enabled and not a.config_for("add").enabled
    assert not b.may_offer_tools and not b.config_for("echo").enabled
    assert plan.secrets == [TOKEN]
    assert TOKEN not in repr(plan)


def test_2025_11_20_toolset_configs() -> None:
    plan = plan_for(body(servers=[url_server("a")], tools=[{
        "type": "mcp_toolset", "mcp_server_name": "a",
        "default_config": {"enabled": False},
        "configs": {"echo": {"enabled": True}, "add": {"enabled": True, "defer_loading": True}},
    }]))
    (a,) = plan.servers
    assert a.config_for("echo").enabled and not a.config_for("echo").defer_loading
    assert a.config_for("add").defer_loading
    assert not a.config_for("fail").enabled


def test_2026_09_15_pinned_listing_from_toolset_and_from_an_earlier_turn() -> None:
    listed = [{"name": "echo", "description": "Echo", "input_schema": {"type": "object"}}]
    earlier = {"role": "assistant", "content": [
        {"type": "mcp_tool_listing", "mcp_server_name": "b", "tools": listed},
        {"type": "text", "text": "ok"}]}
    request = body(
        servers=[url_server("a"), url_server("b", url="https://other.example.com/mcp")],
        tools=[{"type": "mcp_toolset", "mcp_server_name": "a", "tools": listed}],
        messages=[{"role": "user", "content": "hi"}, earlier,
                  {"role": "user", "content": "again"}])
    plan = plan_for(request, betas=["mcp-client-2026-09-15"])
    assert plan.emit_listing
    assert [t.name for t in plan.servers[0].pinned or ()] == ["echo"]
    assert [t.name for t in plan.servers[1].pinned or ()] == ["echo"]
    assert not plan_for(request).emit_listing  # accepted without the header too
    stripped = strip_mcp(request)
    assert "mcp_servers" not in stripped and stripped["tools"] == []
    assert stripped["messages"][1]["content"] == [{"type": "text", "text": "ok"}]
    assert request["messages"][1]["content"][0]["type"] == "mcp_tool_listing"  # untouched


@pytest.mark.parametrize(("request_body", "expected"), [
    (body(servers={"name": "x"}), "mcp_servers: Input should be a valid list"),
    (body(servers=["x"]), "mcp_servers.0: Input should be an object"),
    (body(servers=[{"type": "url", "url": "https://a.example"}]), "mcp_servers.0.name: Field "
                                                                  "required"),
    (body(servers=[{"type": "url", "name": "x"}]), "(MCP server 'x').url: Field required"),
    (body(servers=[url_server("x", type="stdio")]), "(MCP server 'x').type: Input should be"),
    (body(servers=[url_server("x", url="file:///etc/passwd")]), "MCP server 'x' needs an http"),
    (body(servers=[url_server("x", authorization_token=5)]), "authorization_token: Input"),
    (body(servers=[url_server("x", tool_configuration={"allowed_tools": "echo"})]),
     "(MCP server 'x').tool_configuration.allowed_tools: Input should be a list"),
    (body(servers=[url_server("x", tool_configuration={"enabled": "yes"})]),
     "tool_configuration.enabled: Input should be a valid boolean"),
    (body(servers=[url_server("x")], tools=[{"type": "mcp_toolset"}]),
     "tools.0.mcp_server_name: Field required"),
    (body(servers=[url_server("x")], tools=[{"type": "mcp_toolset", "mcp_server_name": "x",
                                             "configs": []}]), "tools.0.configs: Input should"),
    (body(servers=[url_server("x")], tools=[{"type": "mcp_toolset", "mcp_server_name": "x",
                                             "tools": [{"name": "t"}]}]),
     "tools.0.tools.0.input_schema: Input should be an object"),
])
def test_malformed_entries_are_400_naming_them(request_body: dict[str, Any],
                                                 expected: str) -> None:
    assert expected in rejected(request_body)


def test_duplicate_names_and_toolsets_are_400() -> None:
    message = rejected(body(servers=[url_server("dup"), url_server("dup")]))
    assert message == "mcp_servers.1.name: duplicate MCP server name 'dup'"
    toolset = {"type": "mcp_toolset", "mcp_server_name": "a"}
    message = rejected(body(servers=[url_server("a")], tools=[toolset, toolset]))
    assert message == ("tools.1: duplicate mcp_toolset for MCP server 'a' (already at "
                       "tools.0)")


def test_a_toolset_naming_no_server_is_400() -> None:
    message = rejected(body(servers=[url_server("a")],
                            tools=[{"type": "mcp_toolset", "mcp_server_name": "ghost"}]))
    assert "MCP server 'ghost' is not defined in mcp_servers" in message
    assert message.startswith("tools.0.mcp_server_name")


# ---------------------------------------------------------------- function names

def test_function_names_route_back_and_long_ones_are_shortened_upstream() -> None:
    names = FunctionNames()
    short = names.add("srv", "echo")
    assert short.function_name == "srv__echo"
    long = names.add("a_rather_long_server_name", LONG_TOOL)
    assert long.function_name == f"a_rather_long_server_name__{LONG_TOOL}"
    assert len(long.function_name) > 64
    assert names.route(long.function_name) == long
    assert long.metric_name == f"mcp:a_rather_long_server_name/{LONG_TOOL}"
    # The upstream sees a deterministic name of at most 64 characters, mapped back.
    upstream = ToolNames()
    sent = upstream.add(long.function_name)
    assert len(sent) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", sent)
    assert ToolNames().add(long.function_name) == sent  # every request agrees
    assert upstream.to_client(sent) == long.function_name
    dotted = names.add("srv", "read.file")
    assert len(upstream.add(dotted.function_name)) <= 64
    assert names.add("srv", "echo") == short  # adding again is idempotent
    with pytest.raises(InvalidRequest, match="both become the function 'a__b__c'"):
        names.add("a", "b__c")
        names.add("a__b", "c")


# ---------------------------------------------------------------- against a live server

async def test_list_and_call_with_a_valid_token(mcp_server: HttpMcpServer) -> None:
    plan = plan_for(body(servers=[url_server("live", mcp_server.url,
                                             authorization_token=TOKEN)]))
    tools = await open_mcp_tools(plan, allow(mcp_server))
    names = [spec.name for spec in tools.specs]
    assert "live__echo" in names and "live__add" in names
    spec = next(s for s in tools.specs if s.name == "live__echo")
    assert (spec.block_type, spec.client_name, spec.server_name) == (MCP_TOOL_USE, "echo",
                                                                     "live")
    assert spec.input_schema["properties"]["text"]["type"] == "string"
    long = next(s for s in tools.specs if s.client_name == LONG_TOOL)
    assert long.name == f"live__{LONG_TOOL}"
    assert tools.route(long.name).tool_name == LONG_TOOL  # type: ignore[union-attr]

    outcome = await tools.call("live__echo", {"text": "hello"}, CTX)
    assert outcome.result_block == {"type": "mcp_tool_result", "is_error": False,
                                    "content": [{"type": "text", "text": "hello"}]}
    assert outcome.model_text == "hello" and not outcome.is_error and not outcome.counted
    tool = next(t for t in tools.tools if t.spec.name == long.name)
    assert (await tool.run({}, CTX)).model_text == "long tool ran"

    failed = await tools.call("live__fail", {"reason": "disk on fire"}, CTX)
    assert failed.is_error and failed.error_code == "tool_error"
    assert failed.result_block["is_error"] is True
    assert "disk on fire" in failed.result_block["content"][0]["text"]
    bad_input = await tools.call("live__add", {"a": "x"}, CTX)
    assert bad_input.is_error
    # The loop goes on: the same toolset still answers.
    assert (await tools.call("live__add", {"a": 2, "b": 3}, CTX)).model_text == "5"
    assert tools.listing_blocks() == []  # no listing beta


async def test_allowed_tools_and_toolset_configs_filter(mcp_server: HttpMcpServer) -> None:
    plan = plan_for(body(servers=[url_server("f", mcp_server.url, authorization_token=TOKEN,
                                             tool_configuration={"allowed_tools": ["echo",
                                                                                   "add"]})]))
    tools = await open_mcp_tools(plan, allow(mcp_server))
    assert sorted(s.name for s in tools.specs) == ["f__add", "f__echo"]
    refused = await tools.call("f__crash", {}, CTX)
    assert refused.is_error and refused.error_code == "unknown_tool"
    assert (await tools.toolsets["f"].call("crash", {}, CTX)).error_code == "unknown_tool"

    plan = plan_for(body(servers=[url_server("g", mcp_server.url, authorization_token=TOKEN)],
                         tools=[{"type": "mcp_toolset", "mcp_server_name": "g",
                                 "default_config": {"enabled": False},
                                 "configs": {"echo": {"enabled": True},
                                             "whoami": {"enabled": True,
                                                        "defer_loading": True}}}]),
                     betas=["mcp-client-2026-09-15"])
    tools = await open_mcp_tools(plan, allow(mcp_server))
    assert [s.name for s in tools.specs] == ["g__echo"]
    assert [s.name for s in tools.deferred_specs] == ["g__whoami"]
    (listing,) = tools.listing_blocks()
    assert listing["type"] == "mcp_tool_listing" and listing["mcp_server_name"] == "g"
    assert {t["name"] for t in listing["tools"]} >= {"echo", "add", "crash"}


async def test_a_pinned_listing_does_not_ask_the_server(mcp_server: HttpMcpServer) -> None:
    # With the wrong token, listing would fail: a pinned listing never lists.
    listed = [{"name": "echo", "description": "Echo", "input_schema": {"type": "object"}}]
    plan = plan_for(body(servers=[url_server("p", mcp_server.url,
                                             authorization_token=BAD_TOKEN)],
                         tools=[{"type": "mcp_toolset", "mcp_server_name": "p",
                                 "tools": listed}]), betas=["mcp-client-2026-09-15"])
    tools = await open_mcp_tools(plan, allow(mcp_server))
    assert [s.name for s in tools.specs] == ["p__echo"]
    assert tools.listing_blocks() == []  # nothing was fetched
    outcome = await tools.call("p__echo", {"text": "x"}, CTX)  # the call meets the 401
    assert outcome.is_error and outcome.error_code == "unavailable"
    assert BAD_TOKEN not in outcome.model_text


async def test_a_rejected_token_is_400_with_the_exact_message(
        mcp_server: HttpMcpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    plan = plan_for(body(servers=[url_server("secured", mcp_server.url,
                                             authorization_token=BAD_TOKEN)]))
    with pytest.raises(InvalidRequest) as info:
        await open_mcp_tools(plan, allow(mcp_server))
    assert info.value.message == "Invalid authorization token for MCP server 'secured'"
    assert info.value.status == 400
    plan = plan_for(body(servers=[url_server("secured", mcp_server.url)]))  # no token at all
    with pytest.raises(InvalidRequest, match="Invalid authorization token for MCP server "
                                             "'secured'"):
        await open_mcp_tools(plan, allow(mcp_server))
    good = plan_for(body(servers=[url_server("ok", mcp_server.url, authorization_token=TOKEN)]))
    tools = await open_mcp_tools(good, allow(mcp_server))
    await tools.call("ok__echo", {"text": "x"}, CTX)
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert TOKEN not in logged and BAD_TOKEN not in logged


async def test_an_unreachable_server_is_400_naming_it() -> None:
    port = free_port()  # nothing listens there
    plan = plan_for(body(servers=[url_server("gone", f"http://127.0.0.1:{port}/mcp",
                                             authorization_token=TOKEN)]))
    config = ConnectorConfig(allow_private=frozenset({f"127.0.0.1:{port}"}),
                             connect_timeout_s=3, timeout_s=3)
    with pytest.raises(InvalidRequest) as info:
        await open_mcp_tools(plan, config)
    assert "MCP server 'gone'" in info.value.message and TOKEN not in info.value.message
    assert "connect" in info.value.message.lower()


class Canary:
    """A loopback listener that records every connection it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]",
                                  "2130706433", "0x7f000001"])
async def test_the_ssrf_guard_refuses_private_addresses_naming_the_server(host: str) -> None:
    canary = Canary()
    try:
        plan = plan_for(body(servers=[url_server("inner", f"http://{host}:{canary.port}/mcp",
                                                 authorization_token=TOKEN)]))
        with pytest.raises(InvalidRequest) as info:
            await open_mcp_tools(plan, ConnectorConfig(connect_timeout_s=2, timeout_s=2))
        assert info.value.message.startswith("MCP server 'inner'")
        assert TOKEN not in info.value.message
    finally:
        canary.close()
    assert canary.hits == 0


async def test_a_disabled_connector_refuses_url_servers() -> None:
    plan = plan_for(body(servers=[url_server("x")]))
    with pytest.raises(InvalidRequest, match="MCP server 'x': the MCP connector is disabled"):
        await open_mcp_tools(plan, ConnectorConfig(enabled=False))


def test_connector_config_from_the_mcp_section() -> None:
    config = ConnectorConfig.from_section({"connector": {"allow_private": ["127.0.0.1:9000"],
                                                         "timeout_s": 5}})
    assert config.allow_private == frozenset({"127.0.0.1:9000"}) and config.timeout_s == 5
    assert ConnectorConfig.from_section({}) == ConnectorConfig()
    for bad in ({"connector": {"timeout_s": "soon"}}, {"connector": {"allowed": []}},
                {"connector": {"allow_private": [1]}}, {"connector": []}):
        with pytest.raises(SettingsError, match=r"mcp\.connector"):
            ConnectorConfig.from_section(bad)
