"""Anthropic Messages request -> OpenRouter Chat Completions request.

The upstream body is built from an explicit mapping, never by copying the client body:
unknown fields are ignored, unknown content-block types are refused by name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import InvalidRequest, NotFound
from ..profiles import ModelProfile
from .content import Converter, check_content_list, text_of_blocks
from .tools import ToolNames, function_tool, tool_choice

ATTRIBUTION_PREFIX = "x-anthropic-billing-header:"
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max", "minimal", "none"})
# Families whose OpenRouter providers honour `cache_control` markers.
_CACHE_FAMILIES = frozenset({"anthropic", "google"})
# Families that accept `system` messages in the middle of the conversation.
_MID_SYSTEM_FAMILIES = frozenset({"openai"})


@dataclass(frozen=True, slots=True)
class RequestOptions:
    keep_attribution_block: bool = False
    session_id: str | None = None
    provider: Mapping[str, Any] | None = None


@dataclass(slots=True)
class ChatPlan:
    """The upstream request and what translating the answer back needs to know."""

    body: dict[str, Any]
    names: ToolNames
    stream: bool
    max_tokens: int
    stop_sequences: list[str] = field(default_factory=list)
    omit_thinking: bool = False
    # Structured output the upstream cannot enforce: the gateway validates and re-asks.
    output_schema: dict[str, Any] | None = None


def build_chat_request(
    req: Mapping[str, Any],
    upstream_model: str,
    profile: ModelProfile,
    options: RequestOptions = RequestOptions(),
) -> ChatPlan:
    _refuse_unmappable(req)
    max_tokens = _required_int(req, "max_tokens", minimum=0)
    messages = req.get("messages")
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: List should have at least 1 item")
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean")

    family = profile.family
    keep_cache = family in _CACHE_FAMILIES
    names = ToolNames()
    tools = _tools(req.get("tools"), names, keep_cache, _referenced_tools(messages), family)

    converter = Converter(
        names=names,
        keep_cache_control=keep_cache,
        mid_system=family in _MID_SYSTEM_FAMILIES,
        replay_reasoning_content=profile.replay_reasoning_content,
        anthropic_upstream=family == "anthropic",
    )
    system = _system(req.get("system"), options.keep_attribution_block, keep_cache)
    out_messages = ([system] if system else []) + converter.messages(messages)

    body: dict[str, Any] = {"model": upstream_model, "messages": out_messages}
    upstream_max = max_tokens if profile.max_output is None else min(max_tokens,
                                                                     profile.max_output)
    body["max_tokens"] = max(upstream_max, 1)
    if tools:
        body["tools"] = tools
        choice, parallel = tool_choice(req.get("tool_choice"), names)
        if choice is not None:
            body["tool_choice"] = choice
        if parallel is not None:
            body["parallel_tool_calls"] = parallel
    stop = _stop_sequences(req.get("stop_sequences"))
    if stop:
        body["stop"] = stop
    for name in ("temperature", "top_p"):
        value = req.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidRequest(f"{name}: Input should be a valid number")
            body[name] = value
    top_k = req.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise InvalidRequest("top_k: Input should be a valid integer")
        body["top_k"] = top_k
    user = _user_id(req.get("metadata"))
    if user:
        body["user"] = user
    omit_thinking = _reasoning(req, body, profile, max_tokens)
    output_schema = _output_format(req, body, profile.structured_outputs)
    top_cache = req.get("cache_control")
    if keep_cache and isinstance(top_cache, Mapping):
        body["cache_control"] = dict(top_cache)
    _service_tier(req, body)
    if options.session_id:
        body["session_id"] = options.session_id
    if options.provider:
        body["provider"] = dict(options.provider)
    if stream:
        body["stream"] = True
    # OpenRouter reports usage (incl. cost and cache tokens) only when asked on some routes.
    body["usage"] = {"include": True}
    return ChatPlan(body, names, stream, max_tokens, stop, omit_thinking, output_schema)


def _refuse_unmappable(req: Mapping[str, Any]) -> None:
    """Fields whose clients have a fallback for a 400, and that cannot be honoured here."""
    if req.get("safeguards") is not None:
        # Claude Code retries without `safeguards` and runs the check itself.
        raise InvalidRequest("safeguards: not supported by this gateway")
    thread = req.get("thread")
    if isinstance(thread, Mapping) and thread.get("type") == "continue":
        # Threads are not held: clients resend the whole conversation on this 404.
        raise NotFound(
            "thread: the thread to continue was not found; send the whole conversation",
            details={"error_code": "thread_not_found"},
        )


def _required_int(req: Mapping[str, Any], name: str, minimum: int) -> int:
    value = req.get(name)
    if value is None:
        raise InvalidRequest(f"{name}: Field required")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name}: Input should be a valid integer")
    if value < minimum:
        raise InvalidRequest(f"{name}: Input should be greater than or equal to {minimum}")
    return value


def _system(system: Any, keep_attribution: bool, keep_cache: bool) -> dict[str, Any] | None:
    if system is None or system == "" or system == []:
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system}
    if not isinstance(system, list):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    check_content_list(system, "system", allowed=("text",))
    blocks = [
        b for b in system
        if keep_attribution or not b.get("text", "").startswith(ATTRIBUTION_PREFIX)
    ]
    blocks = [b for b in blocks if b.get("text")]
    if not blocks:
        return None
    marked = keep_cache and any(isinstance(b.get("cache_control"), Mapping) for b in blocks)
    if not marked:
        # Plain string: the most widely accepted shape across providers.
        return {"role": "system", "content": text_of_blocks(blocks)}
    parts: list[dict[str, Any]] = []
    for block in blocks:
        part: dict[str, Any] = {"type": "text", "text": block["text"]}
        if isinstance(block.get("cache_control"), Mapping):
            part["cache_control"] = dict(block["cache_control"])
        parts.append(part)
    return {"role": "system", "content": parts}


def _referenced_tools(messages: list[Any]) -> set[str]:
    """Tool names that Claude Code's tool search loaded (`tool_reference` in tool results)."""
    found: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, Mapping) or block.get("type") != "tool_result":
                continue
            inner = block.get("content")
            if isinstance(inner, list):
                for item in inner:
                    if isinstance(item, Mapping) and item.get("type") == "tool_reference":
                        name = item.get("tool_name")
                        if isinstance(name, str):
                            found.add(name)
    return found


def _tools(
    tools: Any, names: ToolNames, keep_cache: bool, loaded: set[str], family: str
) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequest(f"tools.{i}: Input should be an object")
        # A deferred tool is invisible to the model until tool search has loaded it.
        if tool.get("defer_loading") is True and tool.get("name") not in loaded:
            names.add(str(tool.get("name")))
            continue
        out.append(function_tool(tool, f"tools.{i}", names, keep_cache, family))
    return out


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
    return [s for s in value if s]


def _user_id(metadata: Any) -> str | None:
    if not isinstance(metadata, Mapping):
        return None
    user = metadata.get("user_id")
    if not isinstance(user, str) or not user:
        return None
    # Claude Code sends a JSON document here; upstreams cap `user` in length.
    return user if len(user) <= 128 else "u_" + hashlib.sha256(user.encode()).hexdigest()[:40]


def _reasoning(
    req: Mapping[str, Any], body: dict[str, Any], profile: ModelProfile, max_tokens: int
) -> bool:
    """Map `thinking` (+ `output_config.effort`) to OpenRouter `reasoning`.

    Returns whether thinking text is to be omitted from the answer (`display: omitted`).
    """
    thinking = req.get("thinking")
    effort = _effort(req)
    if thinking is None:
        if effort and profile.reasoning:
            body["reasoning"] = {"effort": effort}
        return False
    if not isinstance(thinking, Mapping):
        raise InvalidRequest("thinking: Input should be an object")
    kind = thinking.get("type")
    omitted = thinking.get("display") == "omitted"
    if kind == "disabled":
        return False
    if kind not in ("enabled", "adaptive", "between_tools"):
        raise InvalidRequest(
            "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled', "
            f"got {kind!r}"
        )
    if not profile.reasoning:
        return omitted
    reasoning: dict[str, Any] = {"enabled": True}
    budget = thinking.get("budget_tokens")
    if kind == "enabled" and budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise InvalidRequest("thinking.budget_tokens: Input should be a valid integer")
        if budget >= max_tokens > 0:
            raise InvalidRequest(
                "max_tokens must be greater than thinking.budget_tokens "
                f"({max_tokens} <= {budget})"
            )
        # Our own clamp of max_tokens must not push the budget over it.
        upstream_max = int(body["max_tokens"])
        reasoning = {"max_tokens": min(budget, max(upstream_max - 1, 1))}
    elif effort:
        reasoning["effort"] = effort
    body["reasoning"] = reasoning
    return omitted


def _effort(req: Mapping[str, Any]) -> str | None:
    config = req.get("output_config")
    if not isinstance(config, Mapping):
        return None
    effort = config.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise InvalidRequest(
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
        )
    return str(effort)


def _output_format(
    req: Mapping[str, Any], body: dict[str, Any], native: bool
) -> dict[str, Any] | None:
    """`output_config.format` (or the older `output_format`) -> `response_format`.

    Returns the schema when the upstream model cannot enforce it: the gateway then asks
    for it in words and validates the answer itself.
    """
    config = req.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else None
    fmt = fmt if fmt is not None else req.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        raise InvalidRequest("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, Mapping):
        raise InvalidRequest("output_config.format.schema: Field required")
    if native:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": dict(schema), "strict": True},
        }
        return None
    instruction = (
        "Answer with a single JSON document, and nothing else, that validates against this "
        f"JSON Schema:\n{orjson.dumps(schema).decode()}"
    )
    body["messages"].insert(_after_system(body["messages"]), {"role": "system",
                                                               "content": instruction})
    return dict(schema)


def _after_system(messages: list[dict[str, Any]]) -> int:
    return 1 if messages and messages[0]["role"] == "system" else 0


def _service_tier(req: Mapping[str, Any], body: dict[str, Any]) -> None:
    if req.get("speed") == "fast":
        body["service_tier"] = "priority"
    elif req.get("service_tier") == "standard_only":
        body["service_tier"] = "default"
