"""The conversation as the model sees it in a tool loop: server-tool blocks as tool calls.

An assistant turn sent back by the client (a replay, or the paused turn being continued)
holds `server_tool_use` / `mcp_tool_use` blocks followed by their result blocks. The model
only knows function calls, so the turn is split into assistant `tool_use` + user
`tool_result` pairs, in order:

    assistant[text, srv A, srv B, result A, result B, text]
 -> assistant[text, tool_use A, tool_use B], user[tool_result A, tool_result B], assistant[text]

A use without its result (or a result without its use) cannot be a pair: it stays in the
turn, where the plain translation summarises it as text. Pure: no I/O.

Also here: the URLs that appeared in the conversation (web_fetch fetches only those).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from yarl import URL

USE_TYPES = frozenset({"server_tool_use", "mcp_tool_use"})
LISTING = "mcp_tool_listing"
# (text the model reads, is_error) for one result block.
ReplayText = Callable[[Mapping[str, Any]], tuple[str, bool]]

_URL = re.compile(r"https?://[^\s<>\"'`\\^{}|]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\")]*"


def is_result_block(kind: Any) -> bool:
    return isinstance(kind, str) and (kind.endswith("_tool_result") or kind == "mcp_tool_result")


def function_name(block: Mapping[str, Any]) -> str:
    """The function a use block was offered as (MCP tools: `<server>__<tool>`)."""
    name = str(block.get("name") or "")
    server = block.get("server_name")
    return f"{server}__{name}" if block.get("type") == "mcp_tool_use" and server else name


def rewrite_messages(messages: list[Any], replay: ReplayText) -> list[Any]:
    """Messages with every assistant turn's server-tool pairs as tool_use/tool_result."""
    out: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if (message.get("role") == "assistant" if isinstance(message, Mapping) else False) and (
                isinstance(content, list) and any(
                    isinstance(b, Mapping) and b.get("type") == LISTING for b in content)):
            # An MCP tool listing (beta mcp-client-2026-09-15) is for the gateway (the
            # plan's pinned tools), not the model: drop it.
            content = [b for b in content
                       if not (isinstance(b, Mapping) and b.get("type") == LISTING)]
            message = {**message, "content": content}
        if (message.get("role") == "assistant" if isinstance(message, Mapping) else False) and (
                isinstance(content, list) and _has_pairs(content)):
            out.extend(split_turn(content, replay))
        else:
            out.append(message)
    return out


def _has_pairs(content: list[Any]) -> bool:
    return any(isinstance(b, Mapping) and (b.get("type") in USE_TYPES
                                           or is_result_block(b.get("type")))
               for b in content)


def split_turn(content: list[Any], replay: ReplayText) -> list[dict[str, Any]]:
    uses = {b.get("id") for b in content
            if isinstance(b, Mapping) and b.get("type") in USE_TYPES}
    answered = {b.get("tool_use_id") for b in content
                if isinstance(b, Mapping) and is_result_block(b.get("type"))}
    paired = (uses & answered) - {None}
    out: list[dict[str, Any]] = []
    calls: list[Any] = []
    results: list[dict[str, Any]] = []

    def flush() -> None:
        if calls:
            out.append({"role": "assistant", "content": list(calls)})
            calls.clear()
        if results:
            out.append({"role": "user", "content": list(results)})
            results.clear()

    for block in content:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind in USE_TYPES and block.get("id") in paired:
            if results:
                flush()
            calls.append({"type": "tool_use", "id": block["id"], "name": function_name(block),
                          "input": block.get("input") or {}})
        elif is_result_block(kind) and block.get("tool_use_id") in paired:
            text, is_error = replay(block)
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block["tool_use_id"],
                                      "content": text or "(no output)"}
            if is_error:
                result["is_error"] = True
            results.append(result)
        else:
            if results:
                flush()
            calls.append(block)
    flush()
    return out


# ---------------------------------------------------------------- URLs in the conversation

def normalize_url(raw: str) -> str | None:
    """The form URLs are compared in: no fragment, lower-case scheme and host."""
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    host = url.host.rstrip(".").lower()
    host = f"[{host}]" if ":" in host else host
    port = "" if url.is_default_port() else f":{url.port}"
    path = url.raw_path.rstrip("/")
    query = f"?{url.raw_query_string}" if url.raw_query_string else ""
    return f"{url.scheme}://{host}{port}{path}{query}"


def urls_in_text(text: str) -> Iterator[str]:
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        # A closing bracket that belongs to an IPv6 host stays.
        if "[" in url and not url.endswith("]") and match.group(0)[len(url):].startswith("]"):
            url += "]"
        yield url


def conversation_urls(request: Mapping[str, Any]) -> set[str]:
    """Normalised URLs given by the user (system, user turns, tool results) or by earlier
    server-tool results: what web_fetch may fetch."""
    found: set[str] = set()
    _collect(request.get("system"), found)
    for message in request.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if message.get("role") == "assistant":
            # The model's own words do not count; results of server tools in its turn do.
            if isinstance(content, list):
                for block in content:
                    if isinstance(block, Mapping) and is_result_block(block.get("type")):
                        _collect(block, found)
        else:
            _collect(content, found)
    return found


def _collect(value: Any, found: set[str]) -> None:
    if isinstance(value, str):
        if "://" in value:
            for url in urls_in_text(value):
                key = normalize_url(url)
                if key:
                    found.add(key)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)
