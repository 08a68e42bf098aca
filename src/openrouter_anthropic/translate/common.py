"""Mappings shared by the streaming and non-streaming paths: one place decides each."""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from typing import Any

import orjson

# Anthropic stop reasons OpenRouter may relay verbatim as native_finish_reason.
_ANTHROPIC_STOP_REASONS = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
     "model_context_window_exceeded"}
)

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None, native: str | None, has_tool_calls: bool) -> str:
    """OpenRouter finish_reason (+ the provider's native value) -> Anthropic stop_reason."""
    if has_tool_calls and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    if native in _ANTHROPIC_STOP_REASONS and native != "tool_use" and (
        finish_reason in ("stop", "length", None) or native == "refusal"
    ):
        return native
    if native in ("max_tokens", "MAX_TOKENS") or finish_reason == "length":
        return "max_tokens"
    if native in ("SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "refusal"):
        return "refusal"
    return _FINISH_TO_STOP.get(finish_reason or "stop", "end_turn")


def usage(raw: Mapping[str, Any] | None, input_estimate: int = 0) -> dict[str, Any]:
    """OpenRouter usage -> Anthropic usage; input_tokens excludes cache reads and writes."""
    if not raw:
        return {
            "input_tokens": input_estimate,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    prompt = _int(raw.get("prompt_tokens"))
    details = raw.get("prompt_tokens_details") or {}
    cached = _int(details.get("cached_tokens"))
    written = _int(details.get("cache_write_tokens") or details.get("cache_creation_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(prompt - cached - written, 0),
        "output_tokens": _int(raw.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }
    reasoning = _int((raw.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": reasoning}
    server = raw.get("server_tool_use") or raw.get("server_tool_use_details")
    if isinstance(server, Mapping) and server.get("web_search_requests"):
        out["server_tool_use"] = {
            "web_search_requests": _int(server.get("web_search_requests")),
            "web_fetch_requests": _int(server.get("web_fetch_requests")),
        }
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def new_message_id() -> str:
    return f"msg_{random.getrandbits(96):024x}"


def message_id_for(generation_id: Any) -> str:
    """A msg_ id that keeps OpenRouter's generation id readable for log correlation."""
    if isinstance(generation_id, str) and generation_id:
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in generation_id)
        return "msg_" + safe[:60]
    return new_message_id()


# Reasoning from non-Anthropic model families is carried inside the Anthropic `signature`
# (or `redacted_thinking.data`) so it comes back unchanged on the next turn.
_TOKEN_PREFIX = "orx1."


def seal_reasoning(details: list[dict[str, Any]]) -> str:
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(orjson.dumps(details)).decode()


def unseal_reasoning(token: str) -> list[dict[str, Any]] | None:
    if not token.startswith(_TOKEN_PREFIX):
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token[len(_TOKEN_PREFIX):]))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return None


ANTHROPIC_REASONING_FORMAT = "anthropic-claude-v1"


def is_anthropic_format(detail: Mapping[str, Any]) -> bool:
    fmt = detail.get("format")
    return fmt is None or fmt == ANTHROPIC_REASONING_FORMAT
