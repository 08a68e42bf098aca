"""web_search through the real app: the openrouter backend (the fake upstream answers the
sub-request with url_citation annotations), searxng (a loopback fake), none; Claude Code's
WebSearch request shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from conftest import MODEL
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, search_reply
from tools_helpers import (
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
from tools_servers import FakeSearxng, serve_app

# What Claude Code 2.1.x sends for its WebSearch tool (a separate, streamed request).
CLAUDE_CODE_SEARCH = {
    "model": MODEL, "max_tokens": 32000, "stream": True,
    "system": [{"type": "text", "text": "You are an assistant for performing a web search "
                                        "tool use"}],
    "messages": [{"role": "user", "content": "Perform a web search for the query: "
                                             "gateway news"}],
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
    "tool_choice": {"type": "tool", "name": "web_search"},
    "thinking": {"type": "disabled"},
}


def search(base: str, fake: FakeOpenRouter, tool: dict[str, Any] = WEB_SEARCH,
           sub_reply: Reply | None = None) -> dict[str, Any]:
    fake.script(calls(call("web_search", query="gateway news")),
                sub_reply or search_reply("gateway news"), Reply(text="Summary."))
    response = post(base, body("search the web for gateway news", [tool]))
    assert response.status_code == 200, response.text
    return dict(response.json())


def sub_request(fake: FakeOpenRouter) -> dict[str, Any]:
    return next(b for b in chat_bodies(fake)
                if b.get("tools", [{}])[0].get("type") == "openrouter:web_search")


# ---------------------------------------------------------------- openrouter backend

def test_openrouter_backend(gateway_url: str, fake: FakeOpenRouter) -> None:
    msg = search(gateway_url, fake)
    assert [b["type"] for b in msg["content"]] == ["server_tool_use", "web_search_tool_result",
                                                   "text"]
    use, result = msg["content"][0], msg["content"][1]
    assert use["name"] == "web_search" and use["input"] == {"query": "gateway news"}
    assert result["tool_use_id"] == use["id"]
    hits = result["content"]
    assert [(h["type"], h["url"], h["title"]) for h in hits] == [
        ("web_search_result", f"https://example.com/gateway-news/{i}",
         f"gateway news - result {i}") for i in (1, 2, 3)]
    assert all(h["encrypted_content"].startswith("ors1.") and h["page_age"] is None
               for h in hits)
    assert "Snippet" not in str(hits)  # snippets travel sealed, for the model only
    sub = sub_request(fake)
    assert sub["model"] == "anthropic/claude-sonnet-4"
    assert sub["tools"] == [{"type": "openrouter:web_search", "parameters": {"max_results": 5}}]
    assert "gateway news" in sub["messages"][-1]["content"]
    text = tool_messages(fake)[0]["content"]
    for i in (1, 2, 3):
        assert f"gateway news - result {i}" in text
        assert f"https://example.com/gateway-news/{i}" in text
        assert f"Snippet {i} about gateway news." in text
    assert msg["usage"]["server_tool_use"] == {"web_search_requests": 1,
                                               "web_fetch_requests": 0}
    assert len(chat_bodies(fake)) == 3


@pytest.mark.parametrize(("extra", "parameters"), [
    ({"allowed_domains": ["example.com"]}, {"allowed_domains": ["example.com"]}),
    ({"blocked_domains": ["spam.example"]}, {"excluded_domains": ["spam.example"]}),
    ({"user_location": {"type": "approximate", "city": "Paris", "country": "FR"}},
     {"user_location": {"type": "approximate", "city": "Paris", "country": "FR"}}),
])
def test_declaration_options_reach_the_sub_request(gateway_url: str, fake: FakeOpenRouter,
                                                   extra: dict[str, Any],
                                                   parameters: dict[str, Any]) -> None:
    search(gateway_url, fake, {**WEB_SEARCH, **extra})
    assert sub_request(fake)["tools"][0]["parameters"] == {"max_results": 5, **parameters}


def test_results_outside_the_domain_lists_are_dropped(gateway_url: str,
                                                      fake: FakeOpenRouter) -> None:
    reply = search_reply("gateway news")
    reply.annotations.append({"type": "url_citation", "url_citation": {
        "url": "https://spam.example/x", "title": "Spam", "content": "buy"}})
    msg = search(gateway_url, fake, {**WEB_SEARCH, "blocked_domains": ["spam.example"]}, reply)
    urls = [h["url"] for h in msg["content"][1]["content"]]
    assert len(urls) == 3 and "https://spam.example/x" not in urls


def test_sub_request_failure_is_unavailable(gateway_url: str, fake: FakeOpenRouter) -> None:
    msg = search(gateway_url, fake, sub_reply=Reply(status=500, error_message="boom"))
    assert msg["content"][1]["content"] == {"type": "web_search_tool_result_error",
                                            "error_code": "unavailable"}
    assert msg["usage"]["server_tool_use"]["web_search_requests"] == 0
    assert "unavailable" in tool_messages(fake)[0]["content"]


@pytest.mark.parametrize(("arguments", "code"), [
    ({"query": "x" * 600}, "query_too_long"),
    ({"query": ""}, "invalid_tool_input"),
    ({"q": "wrong field"}, "invalid_tool_input"),
])
def test_bad_queries(gateway_url: str, fake: FakeOpenRouter, arguments: dict[str, Any],
                     code: str) -> None:
    fake.script(calls(call("web_search", **arguments)), Reply(text="ok"))
    msg = post(gateway_url, body("search", [WEB_SEARCH])).json()
    assert msg["content"][1]["content"]["error_code"] == code
    assert len(chat_bodies(fake)) == 2  # no sub-request was made


def test_max_uses_spans_the_loop(gateway_url: str, fake: FakeOpenRouter) -> None:
    fake.script(calls(call("web_search", query="one")), search_reply("one"),
                calls(call("web_search", query="two")), Reply(text="done"))
    msg = post(gateway_url, body("search twice", [{**WEB_SEARCH, "max_uses": 1}])).json()
    results = [b["content"] for b in msg["content"] if b["type"] == "web_search_tool_result"]
    assert isinstance(results[0], list)
    assert results[1] == {"type": "web_search_tool_result_error",
                          "error_code": "max_uses_exceeded"}
    assert msg["usage"]["server_tool_use"]["web_search_requests"] == 1


# ---------------------------------------------------------------- Claude Code's request

def test_claude_code_websearch_request_streamed(gateway_url: str, fake: FakeOpenRouter) -> None:
    """No script: the fake's own rules play the model (search, then summarise)."""
    events = stream_events(gateway_url, CLAUDE_CODE_SEARCH)
    started = check_event_order(events)
    assert [b["type"] for b in started] == ["server_tool_use", "web_search_tool_result", "text"]
    assert started[0]["name"] == "web_search" and started[0]["input"] == {}
    query = "".join(d["delta"]["partial_json"] for n, d in events
                    if n == "content_block_delta" and d["index"] == 0)
    assert '"query"' in query and "gateway news" in query
    links = [(h["title"], h["url"]) for h in started[1]["content"]]
    assert links[0] == ("gateway news - result 1", "https://example.com/gateway-news/1")
    final = next(d for n, d in events if n == "message_delta")
    assert final["usage"]["server_tool_use"]["web_search_requests"] == 1
    model_calls = [b for b in chat_bodies(fake) if b["tools"][0].get("type") == "function"]
    assert model_calls[0]["tool_choice"] == {"type": "function",
                                             "function": {"name": "web_search"}}
    assert model_calls[1]["tool_choice"] == "auto"


async def test_claude_code_websearch_with_the_async_sdk(async_client: anthropic.AsyncAnthropic,
                                                        fake: FakeOpenRouter) -> None:
    request = {k: v for k, v in CLAUDE_CODE_SEARCH.items() if k != "stream"}
    async with async_client.messages.stream(**request) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["server_tool_use", "web_search_tool_result",
                                               "text"]
    result = final.content[1]
    assert isinstance(result.content, list)
    assert result.content[0].url == "https://example.com/gateway-news/1"
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 1


# ---------------------------------------------------------------- searxng, none, disabled

def test_searxng_backend(make_gateway: Callable[..., str], fake: FakeOpenRouter) -> None:
    searx = FakeSearxng()
    with serve_app(searx.app()) as port:
        base = make_gateway(server_tools={"web_search": {
            "backend": "searxng", "searxng_url": f"http://127.0.0.1:{port}/search"}})
        fake.script(calls(call("web_search", query="gateway")), Reply(text="ok"))
        msg = post(base, body("search the web for gateway", [WEB_SEARCH])).json()
        searx.status = 503
        fake.script(calls(call("web_search", query="again")), Reply(text="ok"))
        down = post(base, body("search again", [WEB_SEARCH])).json()
    assert searx.queries[0] == {"q": "gateway", "format": "json"}
    hits = msg["content"][1]["content"]
    assert [(h["url"], h["title"], h["page_age"]) for h in hits] == [
        ("https://searx.example/1", "Searx gateway 1", "2026-11-01"),
        ("https://searx.example/2", "Searx gateway 2", "2026-11-01")]
    assert "searx snippet 1" in tool_messages(fake, -3)[0]["content"]
    assert msg["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert down["content"][1]["content"]["error_code"] == "unavailable"


def test_none_backend_is_unavailable(make_gateway: Callable[..., str],
                                     fake: FakeOpenRouter) -> None:
    base = make_gateway(server_tools={"web_search": {"backend": "none"}})
    fake.script(calls(call("web_search", query="x")), Reply(text="no search"))
    msg = post(base, body("search", [WEB_SEARCH])).json()
    assert msg["content"][1]["content"] == {"type": "web_search_tool_result_error",
                                            "error_code": "unavailable"}
    assert msg["content"][2]["text"] == "no search"


def test_disabled_web_search_is_a_400(make_gateway: Callable[..., str]) -> None:
    base = make_gateway(server_tools={"web_search": {"enabled": False}})
    response = post(base, body("search", [WEB_SEARCH]))
    assert response.status_code == 400
    assert "web_search_20250305" in response.json()["error"]["message"]
