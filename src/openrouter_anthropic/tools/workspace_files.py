"""The workspace's file tools: Read, Write, Edit, MultiEdit, LS and Glob.

Each takes the tool input as Claude Code sends it and returns the text the model reads, in
Claude Code's formats (cat -n lines, a tree for LS, newest-first paths for Glob); a refusal
or failure raises ToolError. Paths go through WorkspaceRoot (paths.py), so nothing outside
the root is read, listed or written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import notebooks
from .paths import ToolError, WorkspaceRoot

DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
GLOB_LIMIT = 100
LS_LIMIT = 1000
MAX_WALK = 200_000
_SKIP_DIRS = {".git", ".hg", ".svn"}


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_file_bytes: int = 10 << 20  # what Read, Edit and NotebookEdit load


def read(root: WorkspaceRoot, tool_input: Mapping[str, Any], limits: FileLimits) -> str:
    path = root.resolve(_text(tool_input, "file_path"))
    if path.is_dir():
        raise ToolError(f"EISDIR: {path} is a directory; use LS to list it")
    if path.suffix == ".ipynb":
        return notebooks.render(root, path, None, limits.max_file_bytes)
    if path.suffix.lower() == ".pdf":
        raise ToolError(f"{path} is a PDF; this workspace reads text files only")
    data = root.read_bytes(path, limits.max_file_bytes)
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} is a binary file ({len(data)} bytes); Read shows text only")
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines:
        return f"(the file {path} exists but is empty)"
    start = max(1, _int(tool_input, "offset", 1) or 1)
    count = _int(tool_input, "limit", DEFAULT_READ_LINES)
    if count <= 0:
        raise ToolError("`limit` must be a positive number of lines")
    if start > len(lines):
        raise ToolError(f"{path} has {len(lines)} lines; offset {start} is past the end")
    shown = lines[start - 1:start - 1 + count]
    text = "\n".join(f"{start + i:>6}\t{_clip(line)}" for i, line in enumerate(shown))
    rest = len(lines) - (start - 1 + len(shown))
    if rest > 0:
        text += f"\n\n({rest} more lines; read on with offset {start + len(shown)})"
    return text


def write(root: WorkspaceRoot, tool_input: Mapping[str, Any]) -> str:
    path = root.resolve(_text(tool_input, "file_path"))
    content = tool_input.get("content")
    if not isinstance(content, str):
        raise ToolError("`content` must be a string")
    if path.is_dir():
        raise ToolError(f"{path} is a directory")
    created = root.write_bytes(path, content.encode())
    return (f"File created successfully at: {path}" if created
            else f"The file {path} has been updated.")


def edit(root: WorkspaceRoot, tool_input: Mapping[str, Any], limits: FileLimits) -> str:
    return multi_edit(root, {"file_path": tool_input.get("file_path"), "edits": [{
        "old_string": tool_input.get("old_string"), "new_string": tool_input.get("new_string"),
        "replace_all": tool_input.get("replace_all", False)}]}, limits)


def multi_edit(root: WorkspaceRoot, tool_input: Mapping[str, Any], limits: FileLimits) -> str:
    path = root.resolve(_text(tool_input, "file_path"))
    edits = tool_input.get("edits")
    if not isinstance(edits, list) or not edits:
        raise ToolError("`edits` must be a non-empty list")
    exists = path.exists()
    if exists:
        text = root.read_bytes(path, limits.max_file_bytes).decode("utf-8", "replace")
    elif isinstance(edits[0], Mapping) and edits[0].get("old_string") == "":
        text = ""  # Claude Code's convention: an empty old_string creates the file
    else:
        raise ToolError(f"File does not exist: {path}")
    first_line = None
    for number, change in enumerate(edits, 1):
        text, line = _apply(text, change, number if len(edits) > 1 else 0, exists)
        first_line = line if first_line is None else min(first_line, line)
    root.write_bytes(path, text.encode())
    return (f"The file {path} has been updated. Here's the result of running `cat -n` on a "
            f"snippet of the edited file:\n{_snippet(text, first_line or 1)}")


def ls(root: WorkspaceRoot, tool_input: Mapping[str, Any]) -> str:
    path = root.resolve(_text(tool_input, "path"))
    if not path.is_dir():
        raise ToolError(f"{path} is not a directory")
    ignore = tool_input.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise ToolError("`ignore` must be a list of glob patterns")
    patterns = [glob_regex(p) for p in ignore]
    lines = [f"- {path}/"]
    count = 0
    for relative, is_dir in _tree(root, path):
        name = relative.rsplit("/", 1)[-1]
        if any(p.match(name) or p.match(relative) for p in patterns):
            continue
        count += 1
        if count > LS_LIMIT:
            lines.append(f"(more than {LS_LIMIT} entries; list a subdirectory or use Glob)")
            break
        depth = relative.count("/") + 1
        lines.append(f"{'  ' * depth}- {name}{'/' if is_dir else ''}")
    return "\n".join(lines)


def glob(root: WorkspaceRoot, tool_input: Mapping[str, Any]) -> str:
    pattern = _text(tool_input, "pattern")
    base = root.resolve(_text(tool_input, "path")) if tool_input.get("path") else root.path
    if not base.is_dir():
        raise ToolError(f"{base} is not a directory")
    if pattern.startswith("/"):
        # An absolute pattern must lie under the folder searched (and so in the workspace).
        normalized = os.path.normpath(pattern)
        if not normalized.startswith(f"{base}/"):
            raise ToolError(f"{pattern} is outside the folder searched ({base})")
        pattern = normalized[len(str(base)) + 1:]
    regex = glob_regex(pattern)
    found: list[tuple[float, str]] = []
    for path in walk_files(root, base):
        if regex.match(path.relative_to(base).as_posix()):
            try:
                found.append((path.stat().st_mtime, str(path)))
            except OSError:
                continue
    if not found:
        return "No files found"
    found.sort(key=lambda item: (-item[0], item[1]))
    names = [name for _, name in found[:GLOB_LIMIT]]
    if len(found) > GLOB_LIMIT:
        names.append("(Results are truncated. Consider using a more specific path or pattern.)")
    return "\n".join(names)


def walk_files(root: WorkspaceRoot, base: Path) -> Iterator[Path]:
    """Files under `base` (no symlinked folders followed, no links leading out, no VCS
    folders), at most MAX_WALK entries."""
    seen = 0
    for folder, dirs, files in os.walk(base, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            seen += 1
            if seen > MAX_WALK:
                return
            path = Path(folder, name)
            if path.is_symlink() and not root.contains(os.path.realpath(path)):
                continue
            yield path


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over '/'-separated relative paths: `**` spans folders, `*` and `?`
    stay within one, `[...]` classes, `{a,b}` alternatives."""
    return _compiled(pattern)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern) + r"\Z", re.DOTALL)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append(f"[{'^' if negate else ''}{re.escape(body).replace(chr(92) + '-', '-')}]")
            i = end + 1
            continue
        elif char == "{" and (end := pattern.find("}", i)) != -1:
            options = pattern[i + 1:end].split(",")
            out.append("(?:" + "|".join(_translate(o) for o in options) + ")")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _apply(text: str, change: Any, number: int, exists: bool) -> tuple[str, int]:
    label = f"edit {number}: " if number else ""
    if not isinstance(change, Mapping):
        raise ToolError(f"{label}each edit must be an object")
    old, new = change.get("old_string"), change.get("new_string")
    if not isinstance(old, str) or not isinstance(new, str):
        raise ToolError(f"{label}`old_string` and `new_string` must be strings")
    if old == new:
        raise ToolError(f"{label}No changes to make: old_string and new_string are exactly "
                        "the same.")
    if old == "":
        if exists or text:
            raise ToolError(f"{label}`old_string` is empty but the file already has content")
        return new, 1
    count = text.count(old)
    if count == 0:
        raise ToolError(f"{label}String to replace not found in file.\nString: {old}")
    replace_all = change.get("replace_all") is True
    if count > 1 and not replace_all:
        raise ToolError(f"{label}Found {count} matches of the string to replace, but "
                        "replace_all is false. To replace all occurrences, set replace_all "
                        "to true. To replace only one occurrence, please provide more context "
                        "to uniquely identify the instance.")
    line = text.count("\n", 0, text.index(old)) + 1
    return (text.replace(old, new) if replace_all else text.replace(old, new, 1)), line


def _snippet(text: str, line: int, around: int = 4) -> str:
    lines = text.splitlines()
    start = max(1, line - around)
    return "\n".join(f"{n:>6}\t{_clip(lines[n - 1])}"
                     for n in range(start, min(len(lines), line + around * 2) + 1))


def _tree(root: WorkspaceRoot, base: Path, prefix: str = "") -> Iterator[tuple[str, bool]]:
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        relative = f"{prefix}{entry.name}"
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.is_symlink() and not root.contains(os.path.realpath(entry.path)):
            continue
        yield relative, is_dir
        if is_dir:
            yield from _tree(root, Path(entry.path), relative + "/")


def _text(tool_input: Mapping[str, Any], key: str) -> str:
    value = tool_input.get(key)
    if not isinstance(value, str) or not value:
        raise ToolError(f"`{key}` is required")
    return value


def _int(tool_input: Mapping[str, Any], key: str, default: int) -> int:
    value = tool_input.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"`{key}` must be a number")
    return int(value)


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "... (truncated)"
