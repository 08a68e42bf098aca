"""OpenRouter chat completion (non-streaming) -> Anthropic message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import UpstreamError, from_upstream
from .common import message_id_for, stop_reason, usage
from .reasoning import blocks_from_details
from .tools import ToolNames, tool_call_id


def parse_arguments(raw: Any) -> dict[str, Any] | None:
    """Tool-call arguments -> input object; None when they are not a JSON object."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tool_use_block(call: Mapping[str, Any], names: ToolNames) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments")
    tool_input = parse_arguments(raw)
    if tool_input is None:
        # Reported to the client's tool layer (its input validation tells the model),
        # instead of failing the whole answer.
        tool_input = {"_invalid_arguments": raw if isinstance(raw, str) else repr(raw)}
    return {
        "type": "tool_use",
        "id": tool_call_id(call.get("id")),
        "name": names.to_client(str(function.get("name") or "")),
        "input": tool_input,
    }


def upstream_failure(completion: Mapping[str, Any]) -> UpstreamError | None:
    """OpenRouter reports some provider errors inside a 200 body."""
    error = completion.get("error")
    choices = completion.get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    if error is None and first.get("finish_reason") == "error":
        error = first.get("error") or {"message": "the upstream provider failed"}
    if error is None:
        return None
    code = error.get("code") if isinstance(error, Mapping) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    return from_upstream(status, {"error": error})


def chat_to_message(
    completion: Mapping[str, Any],
    requested_model: str,
    names: ToolNames,
    omit_thinking: bool = False,
    stop_sequences: list[str] | None = None,
) -> dict[str, Any]:
    failure = upstream_failure(completion)
    if failure is not None:
        raise failure
    choices = completion.get("choices") or []
    choice: Mapping[str, Any] = choices[0] if choices else {}
    message: Mapping[str, Any] = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    details = message.get("reasoning_details")
    content.extend(blocks_from_details(
        details if isinstance(details, list) else [],
        message.get("reasoning") if isinstance(message.get("reasoning"), str) else None,
        omit_thinking,
    ))
    text = message.get("content")
    if isinstance(text, list):  # some providers return content parts
        text = "".join(str(p.get("text", "")) for p in text if isinstance(p, Mapping))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls") or []
    content.extend(tool_use_block(call, names) for call in calls if isinstance(call, Mapping))
    reason = stop_reason(choice.get("finish_reason"), choice.get("native_finish_reason"),
                         bool(calls))
    if refusal:
        reason = "refusal"
    result: dict[str, Any] = {
        "id": message_id_for(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": matched_stop_sequence(reason, choice, stop_sequences),
        "usage": usage(completion.get("usage")),
    }
    if reason == "refusal":
        result["stop_details"] = {"type": "refusal"}
    return result


def matched_stop_sequence(
    reason: str, choice: Mapping[str, Any], stop_sequences: list[str] | None
) -> str | None:
    """Which stop sequence ended the output, where that can be known."""
    if reason != "stop_sequence" or not stop_sequences:
        return None
    # vLLM-style providers name the matched string in `stop_reason`.
    named = choice.get("stop_reason")
    if isinstance(named, str) and named in stop_sequences:
        return named
    return stop_sequences[0] if len(stop_sequences) == 1 else None
