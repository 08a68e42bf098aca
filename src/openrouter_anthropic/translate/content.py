"""Anthropic conversation turns and content blocks -> OpenAI-style chat messages.

Ordering rules of OpenAI-style upstreams that Anthropic does not have:
- every assistant ``tool_calls`` entry must be answered by ``tool`` messages right after it,
  so a user turn's ``tool_result`` blocks become ``tool`` messages *before* the rest of it;
- tool messages hold text only for most providers, so images and documents returned by a
  tool travel in the user message that follows, labelled with the call they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest
from .common import ANTHROPIC_REASONING_FORMAT, unseal_reasoning
from .reasoning import TEXT_ONLY_FORMAT, detail_text
from .tools import ToolNames, tool_call_id

_USER_BLOCKS = ("text", "image", "document", "search_result", "tool_result")
_ASSISTANT_BLOCKS = ("text", "thinking", "redacted_thinking", "tool_use")
# Echoes of server-side tool activity: replayed to the model as text.
_SERVER_ECHO_BLOCKS = (
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "mcp_tool_use", "mcp_tool_result", "mcp_tool_listing",
)
_TOOL_RESULT_BLOCKS = ("text", "image", "document", "search_result", "tool_reference")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def check_content_list(blocks: list[Any], path: str, allowed: tuple[str, ...]) -> None:
    for i, block in enumerate(blocks):
        if not isinstance(block, Mapping):
            raise InvalidRequest(f"{path}.{i}: Input should be an object")
        kind = block.get("type")
        if kind not in allowed:
            raise InvalidRequest(
                f"{path}.{i}.type: unknown content block type {kind!r} here "
                f"(expected one of: {', '.join(allowed)})"
            )
        if kind == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{path}.{i}.text: Input should be a valid string")


def text_of_blocks(blocks: list[Mapping[str, Any]]) -> str:
    return "\n\n".join(str(b.get("text", "")) for b in blocks if b.get("text"))


class Converter:
    def __init__(
        self,
        names: ToolNames,
        keep_cache_control: bool,
        mid_system: bool,
        replay_reasoning_content: bool,
        anthropic_upstream: bool,
    ) -> None:
        self.names = names
        self.keep_cache = keep_cache_control
        self.mid_system = mid_system
        self.replay_reasoning_content = replay_reasoning_content
        self.anthropic_upstream = anthropic_upstream
        self.out: list[dict[str, Any]] = []
        # Mid-conversation system text waiting for the next user turn (folded upstreams).
        self.pending_system: list[str] = []

    def messages(self, messages: list[Any]) -> list[dict[str, Any]]:
        for i, message in enumerate(messages):
            path = f"messages.{i}"
            if not isinstance(message, Mapping):
                raise InvalidRequest(f"{path}: Input should be an object")
            role = message.get("role")
            content = message.get("content")
            if content is None:
                raise InvalidRequest(f"{path}.content: Field required")
            if not isinstance(content, str | list):
                raise InvalidRequest(f"{path}.content: Input should be a string or a list")
            if role == "user":
                self._user(content, path)
            elif role == "assistant":
                self._assistant(content, path)
            elif role == "system":
                self._system(content, path)
            else:
                raise InvalidRequest(
                    f"{path}.role: Input should be 'user', 'assistant' or 'system', got {role!r}"
                )
        if self.pending_system:
            self._append("user", [self._system_note()])
        return self.out

    def _system(self, content: str | list[Any], path: str) -> None:
        if isinstance(content, list):
            check_content_list(content, f"{path}.content", allowed=("text",))
            text = text_of_blocks(content)
        else:
            text = content
        if not text:
            return
        if self.mid_system:
            self.out.append({"role": "system", "content": text})
        else:
            self.pending_system.append(text)

    def _system_note(self) -> dict[str, Any]:
        text = "\n\n".join(self.pending_system)
        self.pending_system = []
        return {"type": "text", "text": f"<system-message>\n{text}\n</system-message>"}

    def _user(self, content: str | list[Any], path: str) -> None:
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            if content:
                parts.append({"type": "text", "text": content})
        else:
            check_content_list(content, f"{path}.content", _USER_BLOCKS + _SERVER_ECHO_BLOCKS)
            for j, block in enumerate(content):
                if block["type"] == "tool_result":
                    parts.extend(self._tool_result(block, f"{path}.content.{j}"))
                else:
                    part = self._user_part(block, f"{path}.content.{j}")
                    if part is not None:
                        parts.append(part)
        if self.pending_system:
            parts.insert(0, self._system_note())
        if parts:
            self._append("user", parts)

    def _user_part(self, block: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        kind = block["type"]
        part: dict[str, Any] | None
        if kind == "text":
            part = {"type": "text", "text": block["text"]} if block["text"] else None
        elif kind == "image":
            part = image_part(block, path)
        elif kind == "document":
            part = document_part(block, path)
        elif kind == "search_result":
            part = {"type": "text", "text": search_result_text(block)}
        else:
            part = {"type": "text", "text": server_echo_text(block)}
        if part is not None and self.keep_cache and isinstance(block.get("cache_control"),
                                                                Mapping):
            part["cache_control"] = dict(block["cache_control"])
        return part

    def _tool_result(self, block: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
        """Emit the tool message; return parts (images, documents) for the user message."""
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"{path}.tool_use_id: Field required")
        inner = block.get("content")
        texts: list[str] = []
        extra: list[dict[str, Any]] = []
        if isinstance(inner, str):
            texts.append(inner)
        elif isinstance(inner, list):
            check_content_list(inner, f"{path}.content", _TOOL_RESULT_BLOCKS)
            for k, item in enumerate(inner):
                kind = item["type"]
                if kind == "text":
                    texts.append(item["text"])
                elif kind == "tool_reference":
                    texts.append(f"Tool {item.get('tool_name')} is now available.")
                elif kind == "search_result":
                    texts.append(search_result_text(item))
                else:
                    maker = image_part if kind == "image" else document_part
                    extra.append(maker(item, f"{path}.content.{k}"))
        elif inner is not None:
            raise InvalidRequest(f"{path}.content: Input should be a string or a list")
        upstream_id = tool_call_id(call_id)
        if extra:
            texts.append(f"[{len(extra)} attachment(s) follow in the next user message]")
        text = "\n".join(t for t in texts if t) or "(no output)"
        if block.get("is_error") is True:
            text = f"[tool error] {text}"
        content: str | list[dict[str, Any]] = text
        cache_control = block.get("cache_control")
        if self.keep_cache and isinstance(cache_control, Mapping):
            # Claude Code marks the newest tool result in a loop: keep the cache breakpoint.
            content = [{"type": "text", "text": text, "cache_control": dict(cache_control)}]
        self.out.append({"role": "tool", "tool_call_id": upstream_id, "content": content})
        if not extra:
            return []
        label = {"type": "text", "text": f"Attachments returned by tool call {upstream_id}:"}
        return [label, *extra]

    def _assistant(self, content: str | list[Any], path: str) -> None:
        if self.pending_system:
            self._append("user", [self._system_note()])
        if isinstance(content, str):
            if content:
                self._append("assistant", [{"type": "text", "text": content}])
            return
        check_content_list(content, f"{path}.content", _ASSISTANT_BLOCKS + _SERVER_ECHO_BLOCKS)
        texts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        thinking: list[Mapping[str, Any]] = []
        for j, block in enumerate(content):
            kind = block["type"]
            if kind == "text":
                if block["text"]:
                    part: dict[str, Any] = {"type": "text", "text": block["text"]}
                    if self.keep_cache and isinstance(block.get("cache_control"), Mapping):
                        part["cache_control"] = dict(block["cache_control"])
                    texts.append(part)
            elif kind == "tool_use":
                calls.append(self._tool_call(block, f"{path}.content.{j}"))
            elif kind in ("thinking", "redacted_thinking"):
                thinking.append(block)
            else:
                texts.append({"type": "text", "text": server_echo_text(block)})
        message: dict[str, Any] = {"role": "assistant"}
        message["content"] = _collapse(texts) if texts else None
        if calls:
            message["tool_calls"] = calls
        if thinking:
            details, reasoning_text = reasoning_details_for_replay(
                thinking, self.anthropic_upstream
            )
            if details:
                message["reasoning_details"] = details
            if reasoning_text and self.replay_reasoning_content:
                message["reasoning"] = reasoning_text
        if message["content"] is None and not calls and "reasoning_details" not in message:
            return
        if self.out and self.out[-1]["role"] == "assistant" and "tool_calls" not in self.out[-1]:
            self._merge_assistant(message)
            return
        self.out.append(message)

    def _merge_assistant(self, message: dict[str, Any]) -> None:
        last = self.out[-1]
        last["content"] = _join_content(last.get("content"), message.get("content"))
        for key in ("tool_calls", "reasoning_details"):
            if key in message:
                last[key] = [*last.get(key, []), *message[key]]
        if "reasoning" in message:
            last["reasoning"] = "\n".join(filter(None, [last.get("reasoning"),
                                                        message["reasoning"]]))

    def _tool_call(self, block: Mapping[str, Any], path: str) -> dict[str, Any]:
        call_id = block.get("id")
        name = block.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"{path}.id: Field required")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{path}.name: Field required")
        tool_input = block.get("input", {})
        return {
            "id": tool_call_id(call_id),
            "type": "function",
            "function": {
                "name": self.names.to_upstream(name),
                "arguments": orjson.dumps(tool_input).decode(),
            },
        }

    def _append(self, role: str, parts: list[dict[str, Any]]) -> None:
        """Add a user/assistant message, merging with a same-role predecessor."""
        if self.out and self.out[-1]["role"] == role and "tool_calls" not in self.out[-1]:
            last = self.out[-1]
            last["content"] = _join_content(last["content"], _collapse(parts))
            return
        self.out.append({"role": role, "content": _collapse(parts)})


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single plain text part becomes a string: the most widely accepted shape."""
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _as_parts(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content


def _join_content(
    first: str | list[dict[str, Any]] | None, second: str | list[dict[str, Any]] | None
) -> str | list[dict[str, Any]] | None:
    parts = _as_parts(first) + _as_parts(second)
    if not parts:
        return None
    if all(p["type"] == "text" and "cache_control" not in p for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def image_part(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise InvalidRequest(f"{path}.source: Field required")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        data = source.get("data")
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"{path}.source.media_type: Input should be 'image/jpeg', 'image/png', "
                f"'image/gif' or 'image/webp', got {media_type!r}"
            )
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"{path}.source.data: Field required")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{path}.source.url: Field required")
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "file":
        raise InvalidRequest(
            f"{path}.source: file sources (Files API) are not supported by this gateway; "
            "send the image as base64 or url"
        )
    raise InvalidRequest(f"{path}.source.type: unknown image source type {kind!r}")


def document_part(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise InvalidRequest(f"{path}.source: Field required")
    kind = source.get("type")
    title = block.get("title")
    filename = title if isinstance(title, str) and title else "document.pdf"
    if kind == "base64":
        media_type = source.get("media_type", "application/pdf")
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"{path}.source.data: Field required")
        return {
            "type": "file",
            "file": {"filename": filename, "file_data": f"data:{media_type};base64,{data}"},
        }
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{path}.source.url: Field required")
        return {"type": "file", "file": {"filename": filename, "file_data": url}}
    if kind == "text":
        return {"type": "text", "text": _titled(block, str(source.get("data", "")))}
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return {"type": "text", "text": _titled(block, inner)}
        if isinstance(inner, list):
            check_content_list(inner, f"{path}.source.content", ("text", "image"))
            return {"type": "text", "text": _titled(block, text_of_blocks(inner))}
        raise InvalidRequest(f"{path}.source.content: Field required")
    if kind == "file":
        raise InvalidRequest(
            f"{path}.source: file sources (Files API) are not supported by this gateway"
        )
    raise InvalidRequest(f"{path}.source.type: unknown document source type {kind!r}")


def _titled(block: Mapping[str, Any], text: str) -> str:
    head = [f"{key.title()}: {block[key]}" for key in ("title", "context")
            if isinstance(block.get(key), str) and block.get(key)]
    return "\n".join([*head, text]) if head else text


def search_result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    body = text_of_blocks(content) if isinstance(content, list) else str(content or "")
    return f"Search result: {block.get('title', '')}\nSource: {block.get('source', '')}\n{body}"


def server_echo_text(block: Mapping[str, Any]) -> str:
    """A server-tool block from an earlier turn, summarised so the model keeps its context."""
    kind = block["type"]
    if kind in ("server_tool_use", "mcp_tool_use"):
        return f"[{kind} {block.get('name')}: {orjson.dumps(block.get('input', {})).decode()}]"
    content = block.get("content")
    if isinstance(content, list):
        lines = []
        for item in content:
            if isinstance(item, Mapping):
                if item.get("url"):
                    lines.append(f"- {item.get('title', '')} <{item['url']}>")
                elif item.get("text"):
                    lines.append(str(item["text"]))
        return f"[{kind}]\n" + "\n".join(lines)
    return f"[{kind}] {orjson.dumps(content).decode()[:4000]}"


def reasoning_details_for_replay(
    blocks: list[Mapping[str, Any]], anthropic_upstream: bool
) -> tuple[list[dict[str, Any]], str]:
    """Thinking blocks sent back by the client -> (reasoning_details, plain reasoning text)."""
    details: list[dict[str, Any]] = []
    texts: list[str] = []
    for block in blocks:
        if block.get("type") == "thinking":
            signature = block.get("signature") or ""
            text = block.get("thinking") or ""
            sealed = unseal_reasoning(signature) if isinstance(signature, str) else None
            if sealed is not None:
                # Plain reasoning text carries no provider state: it goes back as text only.
                details.extend(d for d in sealed if d.get("format") != TEXT_ONLY_FORMAT)
                text = text or "".join(detail_text(d) for d in sealed)
            elif signature:
                details.append({
                    "type": "reasoning.text",
                    "text": text,
                    "signature": signature,
                    "format": ANTHROPIC_REASONING_FORMAT,
                })
            # Unsigned Anthropic-format thinking is dropped: Anthropic rejects it.
            if text:
                texts.append(text)
        else:
            data = block.get("data") or ""
            sealed = unseal_reasoning(data) if isinstance(data, str) else None
            if sealed is not None:
                details.extend(sealed)
            elif data and anthropic_upstream:
                details.append({
                    "type": "reasoning.encrypted",
                    "data": data,
                    "format": ANTHROPIC_REASONING_FORMAT,
                })
    for index, detail in enumerate(details):
        detail["index"] = index
    return details, "\n".join(texts)
