"""The code-execution text editor (`text_editor_code_execution`): view, create and
str_replace on the files of a container, with Anthropic's result shapes.

It runs in the gateway on the container's directory (a file edit needs no process), with
the same path rules as everything else: paths name the sandbox's view (`/workspace/...` or
relative to it) and must stay inside the container.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .paths import PathRefused, ToolError, WorkspaceRoot

_IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


class EditorError(ToolError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # file_not_found | invalid_tool_input


@dataclass(frozen=True, slots=True)
class EditorResult:
    content: dict[str, Any]  # the text_editor_code_execution_*_result block
    model_text: str


def run_editor(root: WorkspaceRoot, mount_at: str, tool_input: Mapping[str, Any],
               max_bytes: int) -> EditorResult:
    command = tool_input.get("command")
    given = tool_input.get("path")
    if not isinstance(given, str) or not given:
        raise EditorError("invalid_tool_input", "`path` is required")
    path = _host_path(root, mount_at, given)
    if command == "view":
        return _view(root, path, given, tool_input.get("view_range"), max_bytes)
    if command == "create":
        text = tool_input.get("file_text")
        if not isinstance(text, str):
            raise EditorError("invalid_tool_input", "`file_text` is required for create")
        if path.is_dir():
            raise EditorError("invalid_tool_input", f"{given} is a directory")
        updated = not root.write_bytes(path, text.encode())
        return EditorResult(
            {"type": "text_editor_code_execution_create_result", "is_file_update": updated},
            f"{'Updated' if updated else 'Created'} {given}")
    if command == "str_replace":
        return _str_replace(root, path, given, tool_input, max_bytes)
    raise EditorError("invalid_tool_input",
                      f"unknown command {command!r}: use view, create or str_replace")


def _host_path(root: WorkspaceRoot, mount_at: str, given: str) -> Path:
    posix = PurePosixPath(given)
    if posix.is_absolute():
        try:
            relative = posix.relative_to(mount_at)
        except ValueError:
            raise EditorError("invalid_tool_input",
                              f"{given} is outside the container's {mount_at}") from None
        given = str(relative)
    try:
        return root.resolve(given)
    except PathRefused as exc:
        raise EditorError("invalid_tool_input", str(exc).replace(str(root.path), mount_at)) \
            from None


def _read_text(root: WorkspaceRoot, path: Path, given: str, max_bytes: int) -> str:
    if not path.exists():
        raise EditorError("file_not_found", f"{given} does not exist")
    try:
        return root.read_bytes(path, max_bytes).decode("utf-8", "replace")
    except ToolError as exc:
        raise EditorError("invalid_tool_input",
                          str(exc).replace(str(root.path), "")) from None


def _view(root: WorkspaceRoot, path: Path, given: str, view_range: Any,
          max_bytes: int) -> EditorResult:
    if path.is_dir():
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        listing = "\n".join(names)
        return EditorResult({"type": "text_editor_code_execution_view_result",
                             "file_type": "text", "content": listing,
                             "num_lines": len(names), "start_line": 1,
                             "total_lines": len(names)}, listing or "(empty directory)")
    suffix = path.suffix.lower()
    if suffix in _IMAGES or suffix == ".pdf":
        if not path.exists():
            raise EditorError("file_not_found", f"{given} does not exist")
        data = root.read_bytes(path, max_bytes)
        kind = "pdf" if suffix == ".pdf" else "image"
        return EditorResult({"type": "text_editor_code_execution_view_result",
                             "file_type": kind, "content": base64.b64encode(data).decode()},
                            f"{given}: {kind}, {len(data)} bytes")
    lines = _read_text(root, path, given, max_bytes).splitlines()
    start, end = 1, len(lines)
    if view_range is not None:
        if (not isinstance(view_range, list) or len(view_range) != 2
                or not all(isinstance(n, int) for n in view_range)):
            raise EditorError("invalid_tool_input", "`view_range` must be [start, end]")
        start = max(1, view_range[0])
        end = len(lines) if view_range[1] == -1 else min(len(lines), view_range[1])
    shown = lines[start - 1:end]
    numbered = "\n".join(f"{start + i:>6}\t{line}" for i, line in enumerate(shown))
    return EditorResult({"type": "text_editor_code_execution_view_result", "file_type": "text",
                         "content": "\n".join(shown), "num_lines": len(shown),
                         "start_line": start, "total_lines": len(lines)},
                        numbered or "(empty file)")


def _str_replace(root: WorkspaceRoot, path: Path, given: str, tool_input: Mapping[str, Any],
                 max_bytes: int) -> EditorResult:
    old, new = tool_input.get("old_str"), tool_input.get("new_str", "")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise EditorError("invalid_tool_input", "`old_str` (not empty) and `new_str` are "
                          "required for str_replace")
    text = _read_text(root, path, given, max_bytes)
    count = text.count(old)
    if count != 1:
        raise EditorError("invalid_tool_input",
                          f"`old_str` was not found in {given}" if count == 0 else
                          f"`old_str` occurs {count} times in {given}; make it unique")
    at = text.index(old)
    root.write_bytes(path, text.replace(old, new, 1).encode())
    first = text.count("\n", 0, at) + 1
    old_lines, new_lines = old.split("\n"), new.split("\n")
    diff = [f"-{line}" for line in old_lines] + [f"+{line}" for line in new_lines]
    return EditorResult({"type": "text_editor_code_execution_str_replace_result",
                         "old_start": first, "old_lines": len(old_lines), "new_start": first,
                         "new_lines": len(new_lines), "lines": diff},
                        f"Edited {given} at line {first}:\n" + "\n".join(diff))
