"""Tool definitions and the names and ids that must survive a round trip.

OpenAI-style upstreams allow function names of at most 64 characters from
``[A-Za-z0-9_-]``; MCP tools in Claude Code (``mcp__server__tool``) exceed that. Names are
shortened deterministically, so the same client name always maps to the same upstream name
and every later request of the conversation agrees, and mapped back on the way out.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest
from .schema import needs_sanitizing, sanitize_for_gemini

MAX_NAME = 64
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def upstream_tool_name(name: str) -> str:
    safe = _INVALID_NAME_CHARS.sub("_", name)
    if safe == name and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[: MAX_NAME - 9]}_{digest}" if len(safe) > MAX_NAME - 9 else f"{safe}_{digest}"


class ToolNames:
    """Client tool name <-> upstream function name, for one request."""

    def __init__(self) -> None:
        self._up: dict[str, str] = {}
        self._down: dict[str, str] = {}

    def add(self, client_name: str) -> str:
        upstream = upstream_tool_name(client_name)
        self._up[client_name] = upstream
        self._down[upstream] = client_name
        return upstream

    def to_upstream(self, client_name: str) -> str:
        return self._up.get(client_name) or self.add(client_name)

    def to_client(self, upstream_name: str) -> str:
        return self._down.get(upstream_name, upstream_name)


def tool_call_id(raw: Any) -> str:
    """A tool-use id valid for Anthropic clients (``^[a-zA-Z0-9_-]+$``), stable for a raw id.

    Gemini adds suffixes such as ``__thought__...``; other characters are replaced, so the
    same raw id always yields the same client id and history replays stay consistent.
    """
    if not isinstance(raw, str) or not raw:
        # No id from the upstream: a fresh one (the client echoes it back on replay).
        return "toolu_" + secrets.token_hex(12)
    return _INVALID_ID_CHARS.sub("_", raw)


# Anthropic-defined client tools: the client runs them, the model must emit their input
# shape. These schemas describe the documented inputs.
_STRING = {"type": "string"}
_INT = {"type": "integer"}
_BASH_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {**_STRING, "description": "The bash command to run."},
        "restart": {"type": "boolean", "description": "Restart the bash session."},
    },
}
# The file-editing inputs the text editor and memory tools share.
_EDIT_FIELDS = {
    "path": _STRING,
    "file_text": _STRING,
    "old_str": _STRING,
    "new_str": _STRING,
    "insert_line": _INT,
    "insert_text": _STRING,
    "view_range": {"type": "array", "items": _INT},
}
_EDITOR_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert",
                                               "undo_edit"]},
        **_EDIT_FIELDS,
    },
    "required": ["command", "path"],
}
_COMPUTER_SCHEMA = {
    "type": "object",
    "properties": {
        "action": _STRING,
        "coordinate": {"type": "array", "items": _INT},
        "start_coordinate": {"type": "array", "items": _INT},
        "text": _STRING,
        "scroll_direction": _STRING,
        "scroll_amount": _INT,
        "duration": {"type": "number"},
        "key": _STRING,
        "region": {"type": "array", "items": _INT},
    },
    "required": ["action"],
}
_MEMORY_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert",
                                               "delete", "rename"]},
        **_EDIT_FIELDS,
        "old_path": _STRING,
        "new_path": _STRING,
    },
    "required": ["command"],
}

_CLIENT_TOOL_SCHEMAS: dict[str, tuple[dict[str, Any], str]] = {
    "bash_": (_BASH_SCHEMA, "Run a command in a persistent bash shell."),
    "text_editor_": (_EDITOR_SCHEMA, "View, create and edit files."),
    "computer_": (_COMPUTER_SCHEMA, "Control the computer: screenshot, mouse and keyboard."),
    "memory_": (_MEMORY_SCHEMA, "Read and write files in the /memories directory."),
}

# Server tools are executed by Anthropic's API; the gateway does not run them yet.
_SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_", "tool_search_tool_",
                         "advisor_", "mcp_toolset")


def function_tool(
    tool: Mapping[str, Any],
    path: str,
    names: ToolNames,
    keep_cache_control: bool,
    family: str = "",
) -> dict[str, Any]:
    """One Anthropic tool definition -> an OpenAI-style function tool."""
    tool_type = tool.get("type")
    name = tool.get("name")
    if tool_type in (None, "custom"):
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{path}.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping):
            raise InvalidRequest(f"{path}.input_schema: Field required")
        parameters = sanitize_for_gemini(schema) if needs_sanitizing(family) else dict(schema)
        function: dict[str, Any] = {"name": names.add(name), "parameters": parameters}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        if tool.get("strict") is True:
            function["strict"] = True
    elif isinstance(tool_type, str) and tool_type.startswith(tuple(_CLIENT_TOOL_SCHEMAS)):
        prefix = tool_type.split("_2", 1)[0] + "_"
        schema, description = _CLIENT_TOOL_SCHEMAS[prefix]
        client_name = name if isinstance(name, str) and name else tool_type.split("_2", 1)[0]
        function = {
            "name": names.add(client_name),
            "description": description,
            "parameters": schema,
        }
    elif isinstance(tool_type, str) and tool_type.startswith(_SERVER_TOOL_PREFIXES):
        raise InvalidRequest(
            f"{path}: server tool type {tool_type!r} is not supported by this gateway yet; "
            "remove it or declare a client tool instead"
        )
    else:
        raise InvalidRequest(f"{path}.type: unknown tool type {tool_type!r}")
    out: dict[str, Any] = {"type": "function", "function": function}
    cache_control = tool.get("cache_control")
    if keep_cache_control and isinstance(cache_control, Mapping):
        out["cache_control"] = dict(cache_control)
    return out


def tool_choice(
    choice: Any, names: ToolNames
) -> tuple[str | dict[str, Any] | None, bool | None]:
    """Anthropic tool_choice -> (OpenAI tool_choice, parallel_tool_calls)."""
    if choice is None:
        return None, None
    if not isinstance(choice, Mapping):
        raise InvalidRequest("tool_choice: Input should be an object")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice.name: Field required")
        return {"type": "function", "function": {"name": names.to_upstream(name)}}, parallel
    raise InvalidRequest(
        f"tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none', got {kind!r}"
    )
