"""Server-tool building blocks, fed values: address checks, seals, history rewriting, URL
extraction, document text, the loop's event relay, the registry's routing, the config."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from openrouter_anthropic.errors import InvalidRequest
from openrouter_anthropic.settings import SettingsError
from openrouter_anthropic.tools.base import MCP_TOOL_USE, ToolSpec, failure
from openrouter_anthropic.tools.config import ServerToolsConfig
from openrouter_anthropic.tools.domains import domain_filter
from openrouter_anthropic.tools.events import LoopEvents
from openrouter_anthropic.tools.extract import Unsupported, extract
from openrouter_anthropic.tools.history import (
    conversation_urls,
    normalize_url,
    rewrite_messages,
    split_turn,
    urls_in_text,
)
from openrouter_anthropic.tools.registry import ToolRegistry
from openrouter_anthropic.tools.seal import Sealer
from openrouter_anthropic.tools.ssrf import Refused, check_target, is_public, parse_target
from openrouter_anthropic.tools.web_fetch import WebFetchProvider
from openrouter_anthropic.tools.web_search import WebSearchProvider, hits_from_annotations
from tools_servers import HTML, pdf_bytes

# ---------------------------------------------------------------- addresses

REFUSED_ADDRESSES = [
    "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "169.254.1.1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "240.0.0.1",
    "255.255.255.255", "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "fc00::1",
    "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1",
    "2002:7f00:1::", "2001:db8::1", "2001::1",
]
PUBLIC_ADDRESSES = ["93.184.216.34", "1.1.1.1", "8.8.8.8", "2606:4700::1111",
                    "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x/",
                                 "http://user:pw@example.com/", "http:///nohost", "javascript:1"])
def test_unfetchable_urls(url: str) -> None:
    with pytest.raises(Refused):
        parse_target(url)


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f000001", "127.1", "0",
                                  "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254",
                                  "[fd00:ec2::254]", "[::ffff:169.254.169.254]", "10.0.0.1"])
async def test_non_public_hosts_are_refused_before_any_connection(host: str) -> None:
    """check_target makes no connection: the metadata services are tested here, not
    through the fetcher (the tests send traffic to loopback only, even on a regression)."""
    with pytest.raises(Refused):
        await check_target(f"http://{host}:8080/", allow_private=())


async def test_allow_private_opens_exactly_one_host_and_port() -> None:
    target = await check_target("http://127.0.0.1:8080/x", allow_private={"127.0.0.1:8080"})
    assert target.addresses == ("127.0.0.1",)
    for other in ("http://127.0.0.1:8081/", "http://localhost:8080/", "http://2130706433:8080/"):
        with pytest.raises(Refused):
            await check_target(other, allow_private={"127.0.0.1:8080"})


# ---------------------------------------------------------------- seals

def test_seal_round_trip_and_tampering() -> None:
    sealer = Sealer(b"k1")
    token = sealer.seal({"url": "https://a.example/", "snippet": "hello"})
    assert sealer.unseal(token) == {"url": "https://a.example/", "snippet": "hello"}
    assert Sealer(b"k2").unseal(token) is None
    body, _, mac = token.rpartition(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert sealer.unseal(f"{flipped}.{mac}") is None
    for junk in (None, 3, "", "ors1.", "ors1.x.y", "something else"):
        assert sealer.unseal(junk) is None


# ---------------------------------------------------------------- history

def _replay(block: Any) -> tuple[str, bool]:
    return f"text of {block['tool_use_id']}", block.get("is_error", False)


def test_split_turn_pairs_in_order() -> None:
    content = [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "text", "text": "let me look"},
        {"type": "server_tool_use", "id": "srv_a", "name": "web_search", "input": {"query": "q"}},
        {"type": "server_tool_use", "id": "srv_b", "name": "web_fetch", "input": {"url": "u"}},
        {"type": "web_search_tool_result", "tool_use_id": "srv_a", "content": []},
        {"type": "web_fetch_tool_result", "tool_use_id": "srv_b", "content": {}},
        {"type": "text", "text": "found"},
        {"type": "mcp_tool_use", "id": "mcp_c", "name": "echo", "server_name": "demo",
         "input": {}},
        {"type": "mcp_tool_result", "tool_use_id": "mcp_c", "is_error": True, "content": []},
    ]
    out = split_turn(content, _replay)
    assert [m["role"] for m in out] == ["assistant", "user", "assistant", "user"]
    assert [b["type"] for b in out[0]["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert [b["id"] for b in out[0]["content"][2:]] == ["srv_a", "srv_b"]
    assert [(r["tool_use_id"], r["content"]) for r in out[1]["content"]] == [
        ("srv_a", "text of srv_a"), ("srv_b", "text of srv_b")]
    assert out[2]["content"][1] == {"type": "tool_use", "id": "mcp_c", "name": "demo__echo",
                                    "input": {}}
    assert out[3]["content"][0]["is_error"] is True


def test_unpaired_blocks_stay_in_the_turn() -> None:
    content = [{"type": "server_tool_use", "id": "lonely", "name": "web_search", "input": {}},
               {"type": "web_fetch_tool_result", "tool_use_id": "orphan", "content": {}}]
    assert split_turn(content, _replay) == [{"role": "assistant", "content": content}]


def test_rewrite_leaves_other_messages_untouched() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "plain"}]
    out = rewrite_messages(messages, _replay)
    assert out == messages and all(a is b for a, b in zip(out, messages, strict=True))


def test_urls_in_text_and_normalisation() -> None:
    text = ("see https://Example.COM/a/?x=1#frag, (http://[::1]:8080/) and "
            "http://127.0.0.1:9/p.")
    assert list(urls_in_text(text)) == ["https://Example.COM/a/?x=1#frag",
                                        "http://[::1]:8080/", "http://127.0.0.1:9/p"]
    assert normalize_url("https://Example.COM/a/?x=1#frag") == "https://example.com/a?x=1"
    assert normalize_url("http://example.com:80/") == "http://example.com"
    assert normalize_url("file:///etc/passwd") is None


def test_conversation_urls_ignore_the_models_own_words() -> None:
    body = {"system": "docs at https://sys.example/", "messages": [
        {"role": "user", "content": "read https://user.example/page"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "maybe https://invented.example/"},
            {"type": "web_search_tool_result", "tool_use_id": "x", "content": [
                {"type": "web_search_result", "url": "https://found.example/r", "title": "t",
                 "encrypted_content": "", "page_age": None}]}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "y",
                                      "content": "result at https://tool.example/x"}]},
    ]}
    assert conversation_urls(body) == {"https://sys.example", "https://user.example/page",
                                       "https://found.example/r", "https://tool.example/x"}


# ---------------------------------------------------------------- documents

def test_html_to_text_drops_scripts_keeps_title_and_links() -> None:
    doc = extract(HTML.encode(), "text/html; charset=utf-8", "http://127.0.0.1:1/html")
    assert doc.title == "Gateway Page"
    assert "Hello gateway" in doc.text and "The answer is 42." in doc.text
    assert "secret" not in doc.text and "color" not in doc.text
    assert doc.links == ["http://127.0.0.1:1/text", "https://example.org/next"]


def test_pdf_text_and_title() -> None:
    doc = extract(pdf_bytes("Hello PDF world"), "application/pdf", "http://x/")
    assert "Hello PDF world" in doc.text
    assert doc.title == "A PDF Title"


def test_unsupported_and_broken_documents() -> None:
    with pytest.raises(Unsupported):
        extract(b"\x89PNG...", "image/png", "http://x/")
    with pytest.raises(Unsupported):
        extract(b"%PDF-1.4 garbage", "application/pdf", "http://x/")
    assert extract(b'{"a": 1}', "application/json", "http://x/").text == '{"a": 1}'
    assert extract("caf\xe9".encode("latin-1"), "text/plain; charset=latin-1", "").text == "café"


# ---------------------------------------------------------------- domains, annotations

def test_domain_filter() -> None:
    allowed = domain_filter({"allowed_domains": ["example.com", "docs.other.org/api"]}, "t")
    assert allowed.permits("https://example.com/x")
    assert allowed.permits("https://www.example.com/x")
    assert not allowed.permits("https://badexample.com/")
    assert allowed.permits("https://docs.other.org/api/v1")
    assert not allowed.permits("https://docs.other.org/blog")
    blocked = domain_filter({"blocked_domains": ["evil.example"]}, "t")
    assert not blocked.permits("http://a.evil.example/") and blocked.permits("http://good.example")
    with pytest.raises(InvalidRequest, match="not both"):
        domain_filter({"allowed_domains": ["a.com"], "blocked_domains": ["b.com"]}, "tools.0")
    with pytest.raises(InvalidRequest, match="allowed_domains"):
        domain_filter({"allowed_domains": "a.com"}, "tools.0")


def test_hits_from_annotations_dedupes_and_ignores_others() -> None:
    completion = {"choices": [{"message": {"content": "x", "annotations": [
        {"type": "url_citation", "url_citation": {"url": "https://a/", "title": "A",
                                                  "content": "sa"}},
        {"type": "url_citation", "url_citation": {"url": "https://a/", "title": "A again"}},
        {"type": "file", "file": {}},
        {"type": "url_citation", "url_citation": {"url": "https://b/"}},
    ]}}]}
    hits = hits_from_annotations(completion)
    assert [(h.url, h.title, h.snippet) for h in hits] == [("https://a/", "A", "sa"),
                                                           ("https://b/", "https://b/", "")]
    assert hits_from_annotations({"choices": []}) == []


# ---------------------------------------------------------------- outcomes, events

def test_failure_shapes() -> None:
    server = failure(ToolSpec("web_fetch", "", {}), "url_not_allowed")
    assert server.result_block == {"type": "web_fetch_tool_result", "content": {
        "type": "web_fetch_tool_result_error", "error_code": "url_not_allowed"}}
    assert server.is_error and not server.counted and "url_not_allowed" in server.model_text
    mcp = failure(ToolSpec("demo__echo", "", {}, block_type=MCP_TOOL_USE, display_name="echo",
                           server_name="demo"), "unavailable", "down")
    assert mcp.result_block == {"type": "mcp_tool_result", "is_error": True,
                                "content": [{"type": "text", "text": "down"}]}


def _turn(*blocks: tuple[str, dict[str, Any], list[dict[str, Any]]]) -> list[Any]:
    events: list[Any] = [("message_start", {"type": "message_start", "message": {}})]
    for i, (_, shell, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": shell}))
        events.extend(("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": d}) for d in deltas)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "tool_use"},
                                     "usage": {"output_tokens": 3}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def test_loop_events_reindex_present_and_accumulate() -> None:
    relay = LoopEvents({"web_fetch": ToolSpec("web_fetch", "", {})})
    relay.begin_turn()
    first = relay.relay(_turn(
        ("text", {"type": "text", "text": ""}, [{"type": "text_delta", "text": "hi"}]),
        ("call", {"type": "tool_use", "id": "call_1", "name": "web_fetch", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"url":'},
          {"type": "input_json_delta", "partial_json": '"http://a/"}'}])))
    assert [name for name, _ in first] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop"]
    shell = first[4][1]["content_block"]
    assert shell["type"] == "server_tool_use" and shell["id"].startswith("srvtoolu_")
    assert shell["input"] == {}
    assert relay.turn_blocks[1]["input"] == {"url": "http://a/"}
    assert relay.stop_reason == "tool_use" and relay.usage == {"output_tokens": 3}
    result = relay.add_block({"type": "web_fetch_tool_result", "tool_use_id": shell["id"],
                              "content": {}})
    assert [(n, d["index"]) for n, d in result] == [("content_block_start", 2),
                                                    ("content_block_stop", 2)]
    relay.begin_turn()
    second = relay.relay(_turn(("text", {"type": "text", "text": ""},
                                [{"type": "text_delta", "text": "done"}])))
    assert [name for name, _ in second] == ["content_block_start", "content_block_delta",
                                            "content_block_stop"]
    assert {d["index"] for _, d in second} == {3}
    assert [b["type"] for b in relay.blocks] == ["text", "server_tool_use",
                                                 "web_fetch_tool_result", "text"]
    assert relay.blocks[0]["text"] == "hi"
    assert first[1][1]["content_block"] == {"type": "text", "text": ""}  # events not mutated


# ---------------------------------------------------------------- registry, config

def _registry() -> ToolRegistry:
    config = ServerToolsConfig.parse({})
    registry = ToolRegistry()
    registry.register(WebSearchProvider(config.web_search, None, Sealer(b"k")))  # type: ignore[arg-type]
    registry.register(WebFetchProvider(config.web_fetch))
    return registry


@pytest.mark.parametrize(("tools", "claimed"), [
    (None, False), ([], False), ([{"name": "Read", "input_schema": {}}], False),
    ([{"type": "bash_20250124", "name": "bash"}], False),
    ([{"type": "custom", "name": "x", "input_schema": {}}], False),
    ([{"type": "web_search_20250305", "name": "web_search"}], True),
    ([{"type": "web_fetch_20990101", "name": "web_fetch"}], True),
    ([{"type": "code_execution_20250825", "name": "code_execution"}], False),
])
def test_registry_claims_only_its_families(tools: Any, claimed: bool) -> None:
    assert _registry().claims({"tools": tools}) is claimed


def test_registry_claims_the_requests_of_attached_keys() -> None:
    registry = _registry()
    web_search = registry.providers[0]
    assert registry.claims({"messages": []}, "key_a") is False
    registry.attach(web_search, ["key_a"])
    assert registry.claims({"messages": []}, "key_a") is True
    assert registry.claims({"messages": []}, "key_b") is False
    assert registry.claims({"messages": []}) is False
    registry.attach(web_search, ["*"])
    assert registry.claims({"messages": []}, "key_b") is True


def test_registry_names_unknown_versions() -> None:
    with pytest.raises(InvalidRequest, match=r"web_fetch_20990101.*web_fetch_20250910"):
        _registry().split([{"name": "Read"}, {"type": "web_fetch_20990101"}])


def test_config_parse_and_errors() -> None:
    config = ServerToolsConfig.parse({
        "max_iterations": 3, "secret": "s",
        "web_search": {"backend": "searxng", "searxng_url": "http://127.0.0.1:1/search"},
        "web_fetch": {"allow_private": ["127.0.0.1:8000", "[::1]:80"], "timeout_s": 2,
                      "max_bytes": 1000},
        "code_execution": {"enabled": True},  # another tool's section: not ours to check
    })
    assert config.max_iterations == 3 and config.secret == b"s"
    assert config.web_fetch.allow_private == ("127.0.0.1:8000", "[::1]:80")
    assert ServerToolsConfig.parse({}, "upstream-key").secret == \
        ServerToolsConfig.parse({}, "upstream-key").secret
    for bad in ({"max_iterations": 0}, {"web_search": {"backend": "bing"}},
                {"web_search": {"backend": "searxng"}}, {"web_fetch": {"timeout": 3}},
                {"web_fetch": {"allow_private": ["nohostport"]}},
                {"web_fetch": {"max_bytes": 0}}, {"web_fetch": {"enabled": "yes"}}):
        with pytest.raises(SettingsError):
            ServerToolsConfig.parse(bad)
