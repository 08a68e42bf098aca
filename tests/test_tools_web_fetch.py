"""web_fetch through the real app against a loopback page server (opened to the gateway
with `allow_private`), and SSRF attempts against a loopback canary that must see nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import RunningGateway, gateway_settings
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply
from tools_helpers import (
    WEB_FETCH,
    WEB_SEARCH,
    body,
    call,
    calls,
    post,
    stream_events,
    tool_messages,
)
from tools_servers import Canary, FakeSearxng, PageServer, serve_app

MAX_BYTES = 100_000


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    with serve_app(server.app()) as port:
        server.port = port
        yield server


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def url(_fake_server: FakeOpenRouter, pages: PageServer) -> Iterator[str]:
    settings = gateway_settings(_fake_server, server_tools={"web_fetch": {
        "allow_private": [f"127.0.0.1:{pages.port}"], "timeout_s": 1, "max_bytes": MAX_BYTES}})
    gateway = RunningGateway(settings).start()
    yield gateway.url
    gateway.stop()


def page(pages: PageServer, path: str) -> str:
    return f"http://127.0.0.1:{pages.port}{path}"


def fetch(base: str, fake: FakeOpenRouter, target: str, tool: dict[str, Any] = WEB_FETCH,
          mention: bool = True, streaming: bool = False) -> tuple[dict[str, Any], str]:
    """The model fetches `target`: (the result block the client got, the model's text)."""
    fake.script(calls(call("web_fetch", url=target)), Reply(text="ok"))
    request = body(f"Please read {target} for me." if mention else "Read the page.", [tool])
    if streaming:
        events = stream_events(base, request)
        blocks = [d["content_block"] for n, d in events if n == "content_block_start"]
    else:
        response = post(base, request)
        assert response.status_code == 200, response.text
        blocks = response.json()["content"]
    result = next(b for b in blocks if b["type"] == "web_fetch_tool_result")
    return result, tool_messages(fake)[0]["content"]


def error_code(result: dict[str, Any]) -> str | None:
    content = result["content"]
    return content.get("error_code") if content["type"] == "web_fetch_tool_result_error" \
        else None


# ---------------------------------------------------------------- content

@pytest.mark.parametrize("streaming", [False, True])
def test_html_page(url: str, fake: FakeOpenRouter, pages: PageServer, streaming: bool) -> None:
    target = page(pages, "/html")
    result, model_text = fetch(url, fake, target, streaming=streaming)
    content = result["content"]
    assert content["type"] == "web_fetch_result" and content["url"] == target
    assert content["retrieved_at"]
    document = content["content"]
    assert document["type"] == "document" and document["title"] == "Gateway Page"
    assert document["source"]["type"] == "text"
    assert document["source"]["media_type"] == "text/plain"
    assert "The answer is 42." in document["source"]["data"]
    assert "secret" not in document["source"]["data"]
    assert "The answer is 42." in model_text and "Gateway Page" in model_text


@pytest.mark.parametrize(("path", "expected"), [
    ("/text", "Plain text body.\nSecond line."),
    ("/json", '{"a": 1}'),
    ("/pdf", "Hello PDF world"),
    ("/redirect/2", "Plain text body."),
])
def test_readable_content(url: str, fake: FakeOpenRouter, pages: PageServer, path: str,
                          expected: str) -> None:
    result, model_text = fetch(url, fake, page(pages, path))
    assert error_code(result) is None
    assert expected in result["content"]["content"]["source"]["data"]
    assert expected in model_text


def test_pdf_title_and_final_url_after_redirects(url: str, fake: FakeOpenRouter,
                                                 pages: PageServer) -> None:
    result, _ = fetch(url, fake, page(pages, "/pdf"))
    assert result["content"]["content"]["title"] == "A PDF Title"
    result, _ = fetch(url, fake, page(pages, "/redirect/3"))
    assert result["content"]["url"] == page(pages, "/text")


@pytest.mark.parametrize(("path", "code"), [
    ("/binary", "unsupported_content_type"),
    ("/large", "content_too_large"),
    ("/large-chunked", "content_too_large"),
    ("/slow", "url_not_accessible"),
    ("/missing", "url_not_accessible"),
    ("/redirect/6", "url_not_accessible"),
])
def test_failures_answer_with_error_codes(url: str, fake: FakeOpenRouter, pages: PageServer,
                                          path: str, code: str) -> None:
    result, model_text = fetch(url, fake, page(pages, path))
    assert error_code(result) == code
    assert code in model_text


def test_failed_fetches_do_not_count(url: str, fake: FakeOpenRouter, pages: PageServer) -> None:
    target = page(pages, "/binary")
    fake.script(calls(call("web_fetch", url=target)), Reply(text="ok"))
    usage = post(url, body(f"read {target}", [WEB_FETCH])).json()["usage"]
    assert usage["server_tool_use"]["web_fetch_requests"] == 0


def test_url_must_have_appeared_in_the_conversation(url: str, fake: FakeOpenRouter,
                                                    pages: PageServer) -> None:
    hits = len(pages.hits)
    result, _ = fetch(url, fake, page(pages, "/text"), mention=False)
    assert error_code(result) == "url_not_in_prior_context"
    assert len(pages.hits) == hits


@pytest.mark.parametrize(("tool", "code"), [
    ({**WEB_FETCH, "blocked_domains": ["127.0.0.1"]}, "url_not_allowed"),
    ({**WEB_FETCH, "allowed_domains": ["example.com"]}, "url_not_allowed"),
    ({**WEB_FETCH, "allowed_domains": ["127.0.0.1"]}, None),
])
def test_domain_lists(url: str, fake: FakeOpenRouter, pages: PageServer, tool: dict[str, Any],
                      code: str | None) -> None:
    result, _ = fetch(url, fake, page(pages, "/text"), tool=tool)
    assert error_code(result) == code


def test_max_content_tokens_truncates_and_citations_flag(url: str, fake: FakeOpenRouter,
                                                         pages: PageServer) -> None:
    tool = {**WEB_FETCH, "max_content_tokens": 3, "citations": {"enabled": True}}
    result, model_text = fetch(url, fake, page(pages, "/html"), tool=tool)
    document = result["content"]["content"]
    assert document["source"]["data"].startswith("Hello gate")
    assert "[truncated" in document["source"]["data"] and "[truncated" in model_text
    assert document["citations"] == {"enabled": True}


def test_urls_found_by_an_earlier_search_can_be_fetched(make_gateway: Callable[..., str],
                                                        fake: FakeOpenRouter,
                                                        pages: PageServer) -> None:
    target = page(pages, "/text")
    searx = FakeSearxng(lambda q: [{"url": target, "title": "Local text", "content": "x"}])
    with serve_app(searx.app()) as port:
        base = make_gateway(server_tools={
            "web_search": {"backend": "searxng",
                           "searxng_url": f"http://127.0.0.1:{port}/search"},
            "web_fetch": {"allow_private": [f"127.0.0.1:{pages.port}"]}})
        fake.script(calls(call("web_search", query="local")),
                    calls(call("web_fetch", url=target)), Reply(text="read"))
        msg = post(base, body("find something local", [WEB_SEARCH, WEB_FETCH])).json()
    fetched = next(b for b in msg["content"] if b["type"] == "web_fetch_tool_result")
    assert fetched["content"]["type"] == "web_fetch_result"
    assert msg["usage"]["server_tool_use"] == {"web_search_requests": 1,
                                               "web_fetch_requests": 1}


# ---------------------------------------------------------------- SSRF

def ssrf_urls(canary: Canary, pages: PageServer) -> list[str]:
    """Loopback forms only: these tests must never send traffic elsewhere, even when the
    guard regresses. The metadata addresses (169.254.169.254, fd00:ec2::254) are checked
    without I/O in test_tools_units.py."""
    port = canary.port
    return [
        f"http://localhost:{port}/",
        f"http://127.0.0.1:{port}/",
        f"http://[::1]:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://127.1:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        "file:///etc/passwd",
        f"http://localhost:{pages.port}/text",  # the page server is open as 127.0.0.1 only
    ]


@pytest.mark.parametrize("index", range(10))
def test_ssrf_attempts_are_refused_and_reach_nothing(url: str, fake: FakeOpenRouter,
                                                     canary: Canary, pages: PageServer,
                                                     index: int) -> None:
    target = ssrf_urls(canary, pages)[index]
    hits = len(pages.hits)
    result, model_text = fetch(url, fake, target)
    assert error_code(result) == "url_not_allowed", (target, result)
    assert "url_not_allowed" in model_text
    assert canary.connections == []
    assert len(pages.hits) == hits


@pytest.mark.parametrize("streaming", [False, True])
def test_redirect_to_loopback_is_refused(url: str, fake: FakeOpenRouter, canary: Canary,
                                         pages: PageServer, streaming: bool) -> None:
    pages.redirect_target = f"http://127.0.0.1:{canary.port}/internal"
    result, _ = fetch(url, fake, page(pages, "/away"), streaming=streaming)
    assert error_code(result) == "url_not_allowed"
    assert pages.hits[-1] == "/away"
    pages.redirect_target = "file:///etc/passwd"
    result, _ = fetch(url, fake, page(pages, "/away"), streaming=streaming)
    assert error_code(result) == "url_not_allowed"
    assert canary.connections == []


def test_canary_works(canary: Canary) -> None:
    """The SSRF tests' witness: it does record a connection when one is made."""
    import socket

    seen = len(canary.connections)
    with socket.create_connection(("127.0.0.1", canary.port), timeout=2) as sock:
        sock.recv(64)
    assert len(canary.connections) == seen + 1
    canary.connections.clear()
