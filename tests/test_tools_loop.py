"""The tool loop through the real app: the fake upstream scripts the model's calls to
web_fetch (against a loopback page server) and web_search; the SDK is the client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from conftest import MODEL, READ_TOOL, RunningGateway, gateway_settings
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, search_reply
from tools_helpers import (
    WEB_FETCH,
    WEB_SEARCH,
    body,
    call,
    calls,
    chat_bodies,
    check_event_order,
    post,
    stream_events,
    tool_messages,
)
from tools_servers import PageServer, serve_app


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    with serve_app(server.app()) as port:
        server.port = port
        yield server


def tool_settings(pages: PageServer, **extra: Any) -> dict[str, Any]:
    web_fetch = {"allow_private": [f"127.0.0.1:{pages.port}"], "timeout_s": 5,
                 **extra.pop("web_fetch", {})}
    return {"server_tools": {"web_fetch": web_fetch, **extra.pop("server_tools", {})},
            **extra}


@pytest.fixture(scope="module")
def url(_fake_server: FakeOpenRouter, pages: PageServer) -> Iterator[str]:
    gateway = RunningGateway(gateway_settings(_fake_server, **tool_settings(pages))).start()
    yield gateway.url
    gateway.stop()


@pytest.fixture
def sdk(url: str, fake: FakeOpenRouter) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=20) as client:
        yield client


def page(pages: PageServer, path: str) -> str:
    return f"http://127.0.0.1:{pages.port}{path}"


# ---------------------------------------------------------------- iterations

def test_two_iterations_non_streaming(sdk: anthropic.Anthropic, fake: FakeOpenRouter,
                                      pages: PageServer) -> None:
    html, text = page(pages, "/html"), page(pages, "/text")
    fake.script(calls(call("web_fetch", url=html), usage={"prompt_tokens": 10,
                                                          "completion_tokens": 1}),
                calls(call("web_fetch", url=text), usage={"prompt_tokens": 20,
                                                          "completion_tokens": 2}),
                Reply(text="Both read.", usage={"prompt_tokens": 30, "completion_tokens": 3}))
    msg = sdk.messages.create(**body(f"Read {html} then {text}", [WEB_FETCH]))
    kinds = [b.type for b in msg.content]
    assert kinds == ["server_tool_use", "web_fetch_tool_result"] * 2 + ["text"]
    first_use, first_result = msg.content[0], msg.content[1]
    assert first_use.id.startswith("srvtoolu_") and first_use.name == "web_fetch"
    assert first_use.input == {"url": html}
    assert first_result.tool_use_id == first_use.id
    assert msg.stop_reason == "end_turn" and msg.model == MODEL
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (60, 6)
    assert msg.usage.server_tool_use is not None
    assert msg.usage.server_tool_use.web_fetch_requests == 2
    assert msg.usage.server_tool_use.web_search_requests == 0
    chats = chat_bodies(fake)
    assert len(chats) == 3
    assert [t["function"]["name"] for t in chats[0]["tools"]] == ["web_fetch"]
    last = chats[2]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "assistant", "tool"]
    assert last[1]["tool_calls"][0]["id"] == first_use.id
    assert "The answer is 42." in last[2]["content"] and "Gateway Page" in last[2]["content"]
    assert "Plain text body." in last[4]["content"]


def test_two_iterations_streaming(url: str, fake: FakeOpenRouter, pages: PageServer) -> None:
    html, text = page(pages, "/html"), page(pages, "/text")
    fake.script(calls(call("web_fetch", url=html), usage={"prompt_tokens": 10,
                                                          "completion_tokens": 1}),
                calls(call("web_fetch", url=text), text="Now the text page.",
                      usage={"prompt_tokens": 20, "completion_tokens": 2}),
                Reply(text="Both read.", usage={"prompt_tokens": 30, "completion_tokens": 3}))
    events = stream_events(url, body(f"Read {html} then {text}", [WEB_FETCH]))
    started = check_event_order(events)
    assert [b["type"] for b in started] == ["server_tool_use", "web_fetch_tool_result", "text",
                                            "server_tool_use", "web_fetch_tool_result", "text"]
    use = started[0]
    assert use["input"] == {} and use["id"].startswith("srvtoolu_")
    fragments = "".join(d["delta"]["partial_json"] for n, d in events
                        if n == "content_block_delta" and d["index"] == 0)
    assert fragments.replace(" ", "") == f'{{"url":"{html}"}}'
    result = started[1]  # whole, in content_block_start
    assert result["tool_use_id"] == use["id"]
    assert result["content"]["type"] == "web_fetch_result"
    assert result["content"]["content"]["source"]["data"].startswith("Hello gateway")
    assert not [d for n, d in events if n == "content_block_delta" and d["index"] == 1]
    final = next(d for n, d in events if n == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["input_tokens"] == 60 and final["usage"]["output_tokens"] == 6
    assert final["usage"]["server_tool_use"] == {"web_search_requests": 0,
                                                 "web_fetch_requests": 2}


def test_streaming_through_the_sdk(sdk: anthropic.Anthropic, fake: FakeOpenRouter,
                                   pages: PageServer) -> None:
    text = page(pages, "/text")
    fake.script(calls(call("web_fetch", url=text)), Reply(text="Read it."))
    with sdk.messages.stream(**body(f"read {text}", [WEB_FETCH])) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["server_tool_use", "web_fetch_tool_result",
                                               "text"]
    assert final.content[0].input == {"url": text}
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_fetch_requests == 1


# ---------------------------------------------------------------- pause_turn, continuation

@pytest.fixture
def two_iterations(make_gateway: Callable[..., str], pages: PageServer) -> str:
    return make_gateway(**tool_settings(pages, server_tools={"max_iterations": 2}))


@pytest.mark.parametrize("streaming", [False, True])
def test_pause_turn_then_continue(two_iterations: str, fake: FakeOpenRouter,
                                  pages: PageServer, streaming: bool) -> None:
    text = page(pages, "/text")
    fake.script(*(calls(call("web_fetch", url=text)) for _ in range(2)))
    request = body(f"keep reading {text}", [WEB_FETCH])
    with anthropic.Anthropic(base_url=two_iterations, api_key="k", max_retries=0) as sdk:
        if streaming:
            with sdk.messages.stream(**request) as stream:
                paused = stream.get_final_message()
        else:
            paused = sdk.messages.create(**request)
        assert paused.stop_reason == "pause_turn"
        assert [b.type for b in paused.content] == ["server_tool_use",
                                                    "web_fetch_tool_result"] * 2
        assert len(chat_bodies(fake)) == 2
        assert paused.usage.server_tool_use is not None
        assert paused.usage.server_tool_use.web_fetch_requests == 2

        # The client sends the paused turn back: the loop continues it.
        fake.script(Reply(text="Finished."))
        turn = [b.model_dump(exclude_none=True) for b in paused.content]
        again = sdk.messages.create(**{**request, "messages": [
            *request["messages"], {"role": "assistant", "content": turn}]})
    assert [b.type for b in again.content] == ["text"] and again.content[0].text == "Finished."
    assert again.stop_reason == "end_turn"
    upstream = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in upstream] == ["user", "assistant", "tool", "assistant", "tool"]
    assert [m["tool_calls"][0]["id"] for m in upstream if m.get("tool_calls")] == [
        paused.content[0].id, paused.content[2].id]
    assert all("Plain text body." in m["content"] for m in upstream if m["role"] == "tool")


# ---------------------------------------------------------------- client tools

@pytest.mark.parametrize("streaming", [False, True])
def test_client_tool_and_server_tool_in_one_turn(url: str, fake: FakeOpenRouter,
                                                 pages: PageServer, streaming: bool) -> None:
    text = page(pages, "/text")
    fake.script(calls(call("web_fetch", url=text), call("Read", file_path="/tmp/a.txt")))
    request = body(f"read {text} and /tmp/a.txt", [WEB_FETCH, READ_TOOL])
    with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0) as sdk:
        if streaming:
            with sdk.messages.stream(**request) as stream:
                msg = stream.get_final_message()
        else:
            msg = sdk.messages.create(**request)
        assert msg.stop_reason == "tool_use"
        assert [b.type for b in msg.content] == ["server_tool_use", "tool_use",
                                                 "web_fetch_tool_result"]
        client_call = msg.content[1]
        assert client_call.name == "Read" and client_call.input == {"file_path": "/tmp/a.txt"}
        assert len(chat_bodies(fake)) == 1  # the client runs Read, not the gateway

        fake.script(Reply(text="All read."))
        turn = [b.model_dump(exclude_none=True) for b in msg.content]
        done = sdk.messages.create(**{**request, "messages": [
            *request["messages"], {"role": "assistant", "content": turn},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": client_call.id,
                                          "content": "contents of a"}]}]})
    assert done.content[0].text == "All read."
    upstream = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in upstream] == ["user", "assistant", "tool", "tool"]
    assert {c["id"] for c in upstream[1]["tool_calls"]} == {msg.content[0].id, client_call.id}
    assert [m["tool_call_id"] for m in upstream[2:]] == [msg.content[0].id, client_call.id]


# ---------------------------------------------------------------- refusals

def test_max_uses_refuses_with_an_error_the_model_reads(sdk: anthropic.Anthropic,
                                                        fake: FakeOpenRouter,
                                                        pages: PageServer) -> None:
    text = page(pages, "/text")
    fake.script(calls(call("web_fetch", url=text), call("web_fetch", url=text)),
                Reply(text="ok"))
    msg = sdk.messages.create(**body(f"read {text} twice", [{**WEB_FETCH, "max_uses": 1}]))
    results = [b for b in msg.content if b.type == "web_fetch_tool_result"]
    assert results[0].content.type == "web_fetch_result"
    assert results[1].content.type == "web_fetch_tool_result_error"
    assert results[1].content.error_code == "max_uses_exceeded"
    assert msg.usage.server_tool_use is not None
    assert msg.usage.server_tool_use.web_fetch_requests == 1
    assert "max_uses_exceeded" in tool_messages(fake)[1]["content"]
    assert pages.hits.count("/text") >= 1


def test_invalid_arguments_answer_invalid_tool_input(sdk: anthropic.Anthropic,
                                                     fake: FakeOpenRouter) -> None:
    bad = call("web_fetch")
    bad["arguments"] = '{"url": '
    fake.script(calls(bad), Reply(text="sorry"))
    msg = sdk.messages.create(**body("fetch something", [WEB_FETCH]))
    assert msg.content[1].content.error_code == "invalid_tool_input"
    assert "invalid_tool_input" in tool_messages(fake)[0]["content"]


def test_rate_limit_per_key_and_tool(make_gateway: Callable[..., str], fake: FakeOpenRouter,
                                     pages: PageServer) -> None:
    base = make_gateway(**tool_settings(pages, web_fetch={"requests_per_minute": 1}))
    text = page(pages, "/text")
    fake.script(calls(call("web_fetch", url=text), call("web_fetch", url=text)),
                Reply(text="ok"))
    msg = post(base, body(f"read {text}", [WEB_FETCH])).json()
    codes = [b["content"].get("error_code") for b in msg["content"]
             if b["type"] == "web_fetch_tool_result"]
    assert codes == [None, "too_many_requests"]


@pytest.mark.parametrize(("tool", "named"), [
    ({"type": "web_search_20990101", "name": "web_search"}, "web_search_20990101"),
    ({"type": "web_fetch_2024", "name": "web_fetch"}, "web_fetch_2024"),
    ({"type": "tool_search_tool_regex_20251119", "name": "x"}, "tool_search_tool_regex"),
])
def test_unknown_server_tool_versions_are_400s_naming_them(url: str, tool: dict[str, Any],
                                                           named: str) -> None:
    for streaming in (False, True):
        response = post(url, {**body("hi", [tool]), "stream": streaming})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and named in error["message"]


@pytest.mark.parametrize(("tools", "message"), [
    ([WEB_FETCH, {**WEB_FETCH}], "declared twice"),
    ([WEB_FETCH, {**READ_TOOL, "name": "web_fetch"}], "client tool and a server tool"),
    ([{**WEB_FETCH, "max_uses": 0}], "max_uses"),
    ([{**WEB_FETCH, "name": "fetcher"}], "name"),
    ([{**WEB_SEARCH, "allowed_domains": ["a.com"], "blocked_domains": ["b.com"]}], "not both"),
])
def test_bad_declarations_are_400s(url: str, fake: FakeOpenRouter, tools: list[Any],
                                   message: str) -> None:
    response = post(url, body("hi", tools))
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not chat_bodies(fake)


# ---------------------------------------------------------------- replay

def _search_turn(sdk: anthropic.Anthropic, fake: FakeOpenRouter) -> list[dict[str, Any]]:
    fake.script(calls(call("web_search", query="gateway")), search_reply("gateway"),
                Reply(text="Found three."))
    msg = sdk.messages.create(**body("search the web for gateway", [WEB_SEARCH]))
    return [b.model_dump(exclude_none=True) for b in msg.content]


def test_replay_of_sealed_search_results_restores_snippets(sdk: anthropic.Anthropic,
                                                           fake: FakeOpenRouter) -> None:
    turn = _search_turn(sdk, fake)
    fake.script(Reply(text="Sure."))
    sdk.messages.create(**{**body("search the web for gateway", [WEB_SEARCH]), "messages": [
        {"role": "user", "content": "search the web for gateway"},
        {"role": "assistant", "content": turn},
        {"role": "user", "content": "thanks, summarise"}]})
    upstream = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in upstream] == ["user", "assistant", "tool", "assistant", "user"]
    tool = upstream[2]["content"]
    assert "https://example.com/gateway/1" in tool and "Snippet 1 about gateway." in tool


def test_replay_with_tampered_seal_keeps_only_titles_and_urls(sdk: anthropic.Anthropic,
                                                              fake: FakeOpenRouter) -> None:
    turn = _search_turn(sdk, fake)
    for item in turn[1]["content"]:
        item["encrypted_content"] = item["encrypted_content"][:-4] + "AAAA"
    fake.script(Reply(text="Sure."))
    sdk.messages.create(**{**body("x", [WEB_SEARCH]), "messages": [
        {"role": "user", "content": "search the web for gateway"},
        {"role": "assistant", "content": turn},
        {"role": "user", "content": "thanks"}]})
    tool = chat_bodies(fake)[-1]["messages"][2]["content"]
    assert "https://example.com/gateway/1" in tool and "gateway - result 1" in tool
    assert "Snippet" not in tool


def test_replay_on_the_plain_path_is_summarised(sdk: anthropic.Anthropic,
                                                fake: FakeOpenRouter) -> None:
    """Without server tools declared, earlier server blocks are still accepted."""
    turn = _search_turn(sdk, fake)
    fake.script(Reply(text="Sure."))
    msg = sdk.messages.create(**{**body("x", []), "messages": [
        {"role": "user", "content": "search"}, {"role": "assistant", "content": turn},
        {"role": "user", "content": "thanks"}]})
    assert msg.content[0].text == "Sure."
    assert "tools" not in chat_bodies(fake)[-1]  # `tools: []` is not sent upstream


# ---------------------------------------------------------------- tool_choice, errors, pings

def test_forced_tool_choice_is_relaxed_after_the_first_call(sdk: anthropic.Anthropic,
                                                            fake: FakeOpenRouter) -> None:
    fake.script(calls(call("web_search", query="q")), search_reply("q"), Reply(text="done"))
    sdk.messages.create(**body("search the web for q", [WEB_SEARCH],
                               tool_choice={"type": "tool", "name": "web_search"}))
    chats = [c for c in chat_bodies(fake) if c["tools"][0].get("type") == "function"]
    assert chats[0]["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
    assert chats[1]["tool_choice"] == "auto"


def test_model_failure_mid_loop_ends_the_stream_with_an_error(url: str, fake: FakeOpenRouter,
                                                              pages: PageServer) -> None:
    text = page(pages, "/text")
    fake.script(calls(call("web_fetch", url=text)), Reply(status=400,
                                                          error_message="bad things"))
    events = stream_events(url, body(f"read {text}", [WEB_FETCH]))
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names
    assert [d["content_block"]["type"] for n, d in events if n == "content_block_start"] == [
        "server_tool_use", "web_fetch_tool_result"]


def test_first_call_failure_is_an_http_error(url: str, fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=400, error_message="bad request upstream"))
    response = post(url, {**body("hi", [WEB_FETCH]), "stream": True})
    assert response.status_code == 400


def test_pings_while_a_tool_runs(make_gateway: Callable[..., str], fake: FakeOpenRouter,
                                 pages: PageServer) -> None:
    base = make_gateway(ping_interval=0.1, **tool_settings(pages, web_fetch={"timeout_s": 0.6}))
    slow = page(pages, "/slow")
    fake.script(calls(call("web_fetch", url=slow)), Reply(text="too slow"))
    events = stream_events(base, body(f"read {slow}", [WEB_FETCH]))
    result_at = next(i for i, (n, d) in enumerate(events) if n == "content_block_start"
                     and d["content_block"]["type"] == "web_fetch_tool_result")
    pings = [n for n, _ in events[:result_at] if n == "ping"]
    assert len(pings) >= 3
    assert events[result_at][1]["content_block"]["content"]["error_code"] == \
        "url_not_accessible"


def test_count_tokens_accepts_server_tools(url: str) -> None:
    import httpx2

    response = httpx2.post(f"{url}/v1/messages/count_tokens", timeout=10, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEB_FETCH, WEB_SEARCH, READ_TOOL]})
    assert response.status_code == 200 and response.json()["input_tokens"] > 0


def test_plain_requests_do_not_touch_the_loop(url: str, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="plain"))
    msg = post(url, body("hi", [READ_TOOL])).json()
    assert msg["content"] == [{"type": "text", "text": "plain"}]
    assert "server_tool_use" not in msg["usage"]
