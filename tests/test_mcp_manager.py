"""Managed MCP servers: configuration, supervision (health, crash, kill -9, backoff,
restart, shutdown of the process group), use by requests, the admin API and /tool-metrics.
The servers are the SDK-built tests/mcp_test_server.py, over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import MODEL, RunningGateway, chat_requests, gateway_settings
from mcp_helpers import PYTHON, SERVER_SCRIPT, HttpMcpServer, process_alive
from openrouter_anthropic.app import key_id
from openrouter_anthropic.errors import GatewayError, InvalidRequest
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, ToolCall
from openrouter_anthropic.settings import Settings, SettingsError
from openrouter_anthropic.tools.base import ToolContext
from openrouter_anthropic.tools.mcp_config import parse_servers
from openrouter_anthropic.tools.mcp_connector import open_mcp_tools
from openrouter_anthropic.tools.mcp_manager import McpManager
from openrouter_anthropic.tools.mcp_plan import parse_mcp_request
from openrouter_anthropic.tools.tool_metrics import ToolMetrics

ADMIN = "admin-key-for-mcp-tests"
CLIENT = "client-key-for-mcp-tests"
OTHER_CLIENT = "other-client-key-for-mcp"
HTTP_TOKEN = "managed-http-token-77aa0c"
CTX = ToolContext(request_id="req_test", key_id="anonymous")


def stdio_entry(**extra: Any) -> dict[str, Any]:
    return {"command": PYTHON, "args": [SERVER_SCRIPT, "stdio"], "health_interval_s": 0.3,
            "shutdown_grace_s": 2, **extra}


async def until(predicate: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def manager() -> AsyncIterator[Callable[..., McpManager]]:
    started: list[McpManager] = []

    def make(**servers: dict[str, Any]) -> McpManager:
        m = McpManager(parse_servers({"servers": servers}))
        m.start()
        started.append(m)
        return m

    yield make
    for m in started:
        await m.stop()


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(token=HTTP_TOKEN).start()
    yield server
    server.stop()


# ---------------------------------------------------------------- configuration

def test_config_expands_variables_and_resolves_paths(tmp_path: Path) -> None:
    env = {"HOME_DIR": "/srv/data", "TOKEN": "t0ken-value"}
    servers = parse_servers({"servers": {
        "files": {"command": "./bin/server", "args": ["--root", "${HOME_DIR}/x", "${NOPE:-d}"],
                  "env": {"ROOT": "${HOME_DIR}"}, "cwd": "work", "keys": [CLIENT]},
        "docs": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"},
                 "attach": True},
        "plain": {"command": "python", "args": ["s.py"]},
    }}, str(tmp_path), env)
    files, docs, plain = servers["files"], servers["docs"], servers["plain"]
    assert files.transport == "stdio" and files.command == str(tmp_path / "bin/server")
    assert files.args == ("--root", "/srv/data/x", "d") and files.env == {"ROOT": "/srv/data"}
    assert files.cwd == str(tmp_path / "work") and files.keys == frozenset({key_id(CLIENT)})
    assert plain.command == "python" and plain.cwd == str(tmp_path)  # the config's folder
    assert docs.transport == "http" and docs.headers == {"Authorization": "Bearer t0ken-value"}
    assert docs.attach is True and docs.keys is None
    assert "t0ken-value" in docs.secrets and "t0ken-value" not in repr(docs)


@pytest.mark.parametrize(("entry", "message"), [
    ({"command": "x", "env": {"A": "${UNSET_VAR_FOR_TEST}"}}, "UNSET_VAR_FOR_TEST is not set"),
    ({"transport": "sse", "url": "http://x"}, "transport must be stdio or http"),
    ({"command": "x", "colour": 1}, "unknown key(s) colour"),
    ({"transport": "http", "url": "ftp://x"}, "url must be an http(s) URL"),
    ({"args": ["a"]}, "command is required"),
    ({"command": "x", "health_interval_s": 0}, "health_interval_s must be positive"),
])
def test_bad_server_config_names_the_server(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=r"mcp\.servers\.bad") as info:
        parse_servers({"servers": {"bad": entry}}, "", {})
    assert message in str(info.value)


def test_settings_load_sets_config_dir(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text("mcp:\n  servers:\n    s:\n      command: python\n      args: [s.py]\n")
    settings = Settings.load(config, env={})
    assert settings.config_dir == str(config.parent.resolve())
    assert parse_servers(settings.mcp, settings.config_dir)["s"].cwd == str(config.parent)
    assert settings.summary()["mcp"] == {"servers": ["s"]}  # no env/headers in summaries


# ---------------------------------------------------------------- supervision

async def test_stdio_server_becomes_healthy_and_serves_calls(
        manager: Callable[..., McpManager], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openrouter_anthropic.mcp")
    m = manager(files=stdio_entry(env={"MCP_TEST_GREETING": "hello"}))
    server = m.get("files")
    assert server is not None
    await until(lambda: server.status == "healthy")
    info = server.info()
    assert info["pid"] and info["restarts"] == 0 and info["tools"] >= 7
    result = await server.call_tool("whoami", {})
    greeting, _cwd, pid = result.texts[0].split("|")
    assert greeting == "hello" and int(pid) == server.pid
    await asyncio.sleep(1.0)  # a few health checks (2026-era: server/discover probes)
    assert server.status == "healthy" and server.last_error is None
    assert any("stderr: test server starting" in r.getMessage() for r in caplog.records)


async def test_a_killed_server_is_restarted_with_backoff(
        manager: Callable[..., McpManager]) -> None:
    m = manager(victim=stdio_entry())
    server = m.get("victim")
    assert server is not None
    await until(lambda: server.status == "healthy")
    first_pid = server.pid
    assert first_pid is not None
    seen: set[str] = set()
    killed_at = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)

    def back() -> bool:
        seen.add(server.status)
        return server.status == "healthy" and server.restarts == 1

    await until(back)
    assert time.monotonic() - killed_at >= 0.8  # the 1 s backoff (with jitter) was waited
    assert "backoff" in seen
    assert server.pid != first_pid and not process_alive(first_pid)
    assert "exited with code -9" in (server.last_error or "")
    assert (await server.call_tool("echo", {"text": "again"})).texts == ("again",)


async def test_a_crashing_tool_fails_as_a_result_and_the_server_comes_back(
        manager: Callable[..., McpManager]) -> None:
    m = manager(crashy=stdio_entry())
    await until(lambda: m.servers["crashy"].status == "healthy")
    plan = parse_mcp_request({"tools": [{"type": "mcp_toolset", "mcp_server_name": "crashy"}]},
                             managed=m)
    assert plan is not None and plan.servers[0].managed
    tools = await open_mcp_tools(plan, managed=m)
    outcome = await tools.call("crashy__crash", {}, CTX)
    assert outcome.is_error and outcome.error_code == "unavailable"
    assert outcome.result_block["type"] == "mcp_tool_result"
    server = m.servers["crashy"]
    await until(lambda: server.status == "healthy" and server.restarts == 1)
    assert (await tools.call("crashy__add", {"a": 1, "b": 2}, CTX)).model_text == "3"


async def test_http_managed_server_with_headers(
        manager: Callable[..., McpManager], http_server: HttpMcpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANAGED_TOKEN", HTTP_TOKEN)
    m = manager(remote={"url": http_server.url, "health_interval_s": 0.3,
                        "headers": {"Authorization": "Bearer ${MANAGED_TOKEN}"}},
                denied={"url": http_server.url, "backoff_initial_s": 0.2,
                        "headers": {"Authorization": "Bearer wrong-token-123"}})
    remote, denied = m.servers["remote"], m.servers["denied"]
    await until(lambda: remote.status == "healthy")
    assert remote.pid is None and remote.info()["url"] == http_server.url
    assert (await remote.call_tool("add", {"a": 2, "b": 2})).texts == ("4",)
    await until(lambda: denied.restarts >= 1)
    assert denied.status in ("backoff", "starting")
    assert "authorization" in (denied.last_error or "")
    assert "wrong-token-123" not in str(denied.info())


async def test_shutdown_stops_the_whole_process_group(
        manager: Callable[..., McpManager]) -> None:
    m = manager(parent=stdio_entry())
    server = m.servers["parent"]
    await until(lambda: server.status == "healthy")
    pid = server.pid
    assert pid is not None
    child = int((await server.call_tool("spawn_child", {})).texts[0])
    assert process_alive(child)
    started = time.monotonic()
    await m.stop()
    assert time.monotonic() - started < 5
    assert server.status == "stopped" and server.pid is None
    await until(lambda: not process_alive(pid) and not process_alive(child), 5)


async def test_restart_skips_the_backoff_and_counts(manager: Callable[..., McpManager]) -> None:
    m = manager(r=stdio_entry())
    server = m.servers["r"]
    await until(lambda: server.status == "healthy")
    pid = server.pid
    server.restart()
    await until(lambda: server.status == "healthy" and server.restarts == 1)
    assert server.pid != pid and pid is not None and not process_alive(pid)


async def test_keys_attach_and_readiness(manager: Callable[..., McpManager]) -> None:
    m = manager(mine=stdio_entry(keys=[CLIENT], attach=True),
                broken={"command": "/nonexistent/mcp-server", "request_wait_s": 0.3})
    mine_id, other_id = key_id(CLIENT), key_id(OTHER_CLIENT)
    assert m.permits("mine", mine_id) and not m.permits("mine", other_id)
    assert m.attached_for(mine_id) == ["mine"] and m.attached_for(other_id) == []
    plan = parse_mcp_request({"messages": []}, key_id=mine_id, managed=m)
    assert plan is not None and [s.name for s in plan.servers] == ["mine"]
    assert parse_mcp_request({"messages": []}, key_id=other_id, managed=m) is None
    with pytest.raises(InvalidRequest, match="MCP server 'mine' is not defined in mcp_servers"):
        parse_mcp_request({"tools": [{"type": "mcp_toolset", "mcp_server_name": "mine"}]},
                          key_id=other_id, managed=m)
    tools = await open_mcp_tools(plan, managed=m)  # waits for the first listing
    assert "mine__echo" in [s.name for s in tools.specs]
    plan = parse_mcp_request({"tools": [{"type": "mcp_toolset", "mcp_server_name": "broken"}]},
                             managed=m)
    assert plan is not None
    with pytest.raises(GatewayError) as info:
        await open_mcp_tools(plan, managed=m)
    assert info.value.status == 529 and "MCP server 'broken' is not ready" in info.value.message
    assert "cannot start" in (m.servers["broken"].last_error or "")


# ---------------------------------------------------------------- tool metrics

def test_tool_metrics_counts_errors_and_percentiles() -> None:
    from openrouter_anthropic.metrics import Registry

    registry = Registry()
    metrics = ToolMetrics(registry)
    for ms in range(1, 101):
        metrics.record("mcp:files/read", ms / 1000)
    metrics.record("web_fetch", 0.2, "url_not_allowed")
    metrics.record("web_fetch", 0.4, "url_not_allowed")
    metrics.record("web_fetch", 0.1, "max_uses_exceeded")
    tools = metrics.snapshot()["tools"]
    assert tools["mcp:files/read"] == {"calls": 100, "errors": {}, "error_count": 0,
                                       "p50_ms": 50.0, "p95_ms": 95.0}
    assert tools["web_fetch"]["errors"] == {"max_uses_exceeded": 1, "url_not_allowed": 2}
    assert tools["web_fetch"]["p95_ms"] == 400.0
    text = registry.render()
    assert 'ora_tool_calls_total{tool="mcp:files/read"} 100' in text
    assert 'ora_tool_errors_total{tool="web_fetch",code="url_not_allowed"} 2' in text
    assert 'ora_tool_duration_seconds_count{tool="web_fetch"} 3' in text


# ---------------------------------------------------------------- through the app

@pytest.fixture
def gateway(fake: FakeOpenRouter) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def make(**settings: Any) -> RunningGateway:
        running = RunningGateway(gateway_settings(fake, **settings)).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


def wait_status(http: httpx2.Client, name: str, predicate: Callable[[dict[str, Any]], bool],
                timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = http.get(f"/admin/mcp/servers/{name}").json()
        if predicate(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"server state not reached: {info}")
        time.sleep(0.05)


def test_admin_endpoints_and_tool_metrics(gateway: Callable[..., RunningGateway]) -> None:
    slow = {"command": PYTHON, "args": ["-c", "import time; time.sleep(60)"],
            "startup_timeout_s": 60}
    started = time.monotonic()
    running = gateway(admin_api_key=ADMIN, proxy_api_keys=(CLIENT,),
                      mcp={"servers": {"files": stdio_entry(), "slow": slow}})
    assert time.monotonic() - started < 3  # boot does not wait for MCP servers
    admin = {"x-api-key": ADMIN}
    with httpx2.Client(base_url=running.url, timeout=10.0, headers=admin) as http, \
            httpx2.Client(base_url=running.url, timeout=10.0) as anon:
        assert http.get("/admin/mcp/servers/slow").json()["status"] == "starting"
        for path in ("/admin/mcp/servers", "/admin/mcp/servers/files",
                     "/admin/mcp/servers/files/tools", "/tool-metrics"):
            assert anon.get(path).status_code == 401
            assert anon.get(path, headers={"x-api-key": CLIENT}).status_code == 401
        assert anon.post("/admin/mcp/servers/files/restart").status_code == 401

        info = wait_status(http, "files", lambda i: i["status"] == "healthy")
        assert info["pid"] and info["restarts"] == 0 and info["last_error"] is None
        listing = http.get("/admin/mcp/servers").json()["data"]
        assert {s["name"] for s in listing} == {"files", "slow"}
        tools = http.get("/admin/mcp/servers/files/tools").json()
        assert {"echo", "add", "crash"} <= {t["name"] for t in tools["data"]}
        assert http.get("/admin/mcp/servers/nope").status_code == 404
        assert http.get("/admin/mcp/servers/files/restart").status_code == 405

        answer = http.post("/admin/mcp/servers/files/restart")
        assert answer.status_code == 202 and answer.json()["restarting"] is True
        after = wait_status(http, "files",
                            lambda i: i["status"] == "healthy" and i["restarts"] == 1)
        assert after["pid"] != info["pid"] and not process_alive(info["pid"])

        app = running.server.config.app
        app.tool_metrics.record("mcp:files/echo", 0.012)
        app.tool_metrics.record("mcp:files/echo", 0.030, "tool_error")
        metrics = http.get("/tool-metrics").json()["tools"]["mcp:files/echo"]
        assert metrics["calls"] == 2 and metrics["errors"] == {"tool_error": 1}
        assert metrics["p50_ms"] == 12.0 and metrics["p95_ms"] == 30.0
        prometheus = http.get("/metrics").text
        assert 'ora_mcp_server_up{server="files"} 1' in prometheus
        assert 'ora_mcp_server_restarts{server="files"} 1' in prometheus
        assert 'ora_tool_calls_total{tool="mcp:files/echo"} 2' in prometheus
        pids = [after["pid"], http.get("/admin/mcp/servers/slow").json()["pid"]]
    running.stop()
    assert pids[1] and not any(process_alive(p) for p in pids)  # shutdown stopped both


def test_admin_endpoints_are_404_without_an_admin_key(
        gateway: Callable[..., RunningGateway]) -> None:
    running = gateway()
    with httpx2.Client(base_url=running.url, timeout=10.0) as http:
        for path in ("/admin/mcp/servers", "/tool-metrics"):
            assert http.get(path, headers={"x-api-key": "anything"}).status_code == 404
    running = gateway(admin_api_key=ADMIN)
    with httpx2.Client(base_url=running.url, timeout=10.0, headers={"x-api-key": ADMIN}) as http:
        assert http.get("/admin/mcp/servers").json() == {"data": []}
        assert http.get("/tool-metrics").json() == {"tools": {}, "window": 1024}



def test_a_server_attached_to_a_key_serves_its_plain_requests(
        fake: FakeOpenRouter, gateway: Callable[..., RunningGateway]) -> None:
    running = gateway(admin_api_key=ADMIN, proxy_api_keys=(CLIENT, OTHER_CLIENT),
                      mcp={"servers": {"files": stdio_entry(attach=[CLIENT])}})
    fake.script(Reply(tool_calls=[ToolCall(id="call_1", name="files__add",
                                           arguments='{"a": 20, "b": 22}')]),
                Reply(text="42 it is"), Reply(text="plain"))
    plain = {"model": MODEL, "max_tokens": 64,
             "messages": [{"role": "user", "content": "add"}]}  # declares no MCP
    with httpx2.Client(base_url=running.url, timeout=20.0) as http, httpx2.Client(
            base_url=running.url, timeout=10.0, headers={"x-api-key": ADMIN}) as admin:
        wait_status(admin, "files", lambda i: i["status"] == "healthy")
        answer = http.post("/v1/messages", json=plain, headers={"x-api-key": CLIENT})
        assert answer.status_code == 200, answer.text
        use, result, text = answer.json()["content"]
        assert (use["type"], use["server_name"], use["name"]) == ("mcp_tool_use", "files", "add")
        assert result["content"] == [{"type": "text", "text": "42"}]
        assert text["text"] == "42 it is"
        other = http.post("/v1/messages", json=plain, headers={"x-api-key": OTHER_CLIENT})
        assert other.status_code == 200 and other.json()["content"][0]["text"] == "plain"
    first, _, third = chat_requests(fake)
    assert "files__add" in {t["function"]["name"] for t in first["tools"]}
    assert not third.get("tools")  # the other key stays on the plain path
