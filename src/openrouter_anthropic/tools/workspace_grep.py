"""The workspace's Grep, with ripgrep's options as Claude Code sends them.

The search runs in a child process (`python -m openrouter_anthropic.tools.workspace_grep`,
JSON in and out) that is killed at its deadline: a model's regex can backtrack for ever,
and Python's `re` holds the GIL while it does, which would stall the gateway's event loop.
The child gets an already-resolved path and applies the root's rules itself too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .paths import ToolError, WorkspaceRoot
from .workspace_files import glob_regex, walk_files

DEFAULT_HEAD_LIMIT = 250
_MAX_FILE_BYTES = 5 << 20
# rg --type names for the common languages (a subset of `rg --type-list`).
_TYPES: dict[str, tuple[str, ...]] = {
    "py": (".py", ".pyi"), "js": (".js", ".mjs", ".cjs", ".jsx"), "ts": (".ts", ".tsx", ".mts"),
    "go": (".go",), "rust": (".rs",), "java": (".java",), "c": (".c", ".h"),
    "cpp": (".cpp", ".cc", ".cxx", ".hpp", ".hh", ".h"), "cs": (".cs",), "rb": (".rb",),
    "php": (".php",), "sh": (".sh", ".bash"), "md": (".md", ".markdown"), "json": (".json",),
    "yaml": (".yaml", ".yml"), "toml": (".toml",), "html": (".html", ".htm"),
    "css": (".css", ".scss"), "sql": (".sql",), "kotlin": (".kt", ".kts"),
    "swift": (".swift",), "txt": (".txt",), "xml": (".xml",),
}


async def run_grep(root: WorkspaceRoot, tool_input: Mapping[str, Any],
                   timeout_s: float) -> str:
    """The text the model reads; ToolError for bad input or a search that ran too long."""
    target = root.resolve(tool_input["path"]) if tool_input.get("path") else root.path
    request = json.dumps({"root": str(root.path), "path": str(target),
                          "input": dict(tool_input)}).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(request), timeout_s)
    except TimeoutError:
        raise ToolError(f"Grep ran longer than {timeout_s:g} s and was stopped; use a simpler "
                        "pattern or a narrower path") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    try:
        answer = json.loads(out)
    except ValueError:
        raise ToolError(f"Grep failed: {err.decode('utf-8', 'replace')[-300:]}") from None
    if answer.get("error"):
        raise ToolError(str(answer["error"]))
    return str(answer["text"])


def search(root: WorkspaceRoot, target: Path, tool_input: Mapping[str, Any]) -> str:
    """The search itself (run in the child process)."""
    options = _Options(tool_input)
    files = [target] if target.is_file() else [
        path for path in walk_files(root, target) if options.wanted(path.relative_to(target))]
    single = target.is_file()
    hits: list[tuple[float, Path, list[str], int]] = []
    for path in files:
        text = _text_of(path)
        if text is None:
            continue
        lines, count = options.scan(text, "" if single else f"{path}")
        if count:
            hits.append((_mtime(path), path, lines, count))
    mode = options.mode
    if mode == "files_with_matches":
        hits.sort(key=lambda hit: (-hit[0], str(hit[1])))
        names = options.page([str(hit[1]) for hit in hits])
        return f"Found {len(names)} file{'s' * (len(names) != 1)}\n" + "\n".join(names) \
            if names else "No files found"
    hits.sort(key=lambda hit: str(hit[1]))
    if mode == "count":
        entries = options.page([f"{'' if single else f'{hit[1]}:'}{hit[3]}" for hit in hits])
        total = sum(hit[3] for hit in hits)
        return ("\n".join(entries) + f"\n\nFound {total} total occurrences across "
                f"{len(hits)} files.") if entries else "No matches found"
    out: list[str] = []
    for _, _, lines, _ in hits:
        if out and options.context:
            out.append("--")
        out.extend(lines)
    shown = options.page(out)
    return "\n".join(shown) if shown else "No matches found"


class _Options:
    def __init__(self, given: Mapping[str, Any]) -> None:
        pattern = given.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("`pattern` is required")
        self.mode = given.get("output_mode") or "files_with_matches"
        if self.mode not in ("content", "files_with_matches", "count"):
            raise ToolError("`output_mode` must be content, files_with_matches or count")
        self.multiline = given.get("multiline") is True
        flags = (re.IGNORECASE if given.get("-i") is True else 0) | re.MULTILINE
        if self.multiline:
            flags |= re.DOTALL
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as exc:
            raise ToolError(f"Invalid regular expression {pattern!r}: {exc}") from None
        around = _number(given, "context", _number(given, "-C", 0))
        self.before = _number(given, "-B", around)
        self.after = _number(given, "-A", around)
        self.context = bool(self.before or self.after)
        self.numbers = given.get("-n") is not False
        self.only = given.get("-o") is True
        self.head = _number(given, "head_limit", DEFAULT_HEAD_LIMIT)
        self.offset = _number(given, "offset", 0)
        glob = given.get("glob")
        self.globs = [glob_regex(g) for g in _split_glob(glob)] if isinstance(glob, str) else []
        kind = given.get("type")
        if kind is not None and kind not in _TYPES:
            raise ToolError(f"unknown file type {kind!r}; known: {', '.join(sorted(_TYPES))}")
        self.suffixes = _TYPES[kind] if isinstance(kind, str) else ()

    def wanted(self, relative: Path) -> bool:
        if any(part.startswith(".") for part in relative.parts):
            return False  # hidden files and folders, as ripgrep skips them
        if self.suffixes and relative.suffix not in self.suffixes:
            return False
        if self.globs:
            posix = relative.as_posix()
            return any(g.match(posix) or g.match(relative.name) for g in self.globs)
        return True

    def scan(self, text: str, label: str) -> tuple[list[str], int]:
        lines = text.split("\n")
        matched: dict[int, list[str]] = {}
        count = 0
        for match in self.regex.finditer(text):
            count += 1
            first = text.count("\n", 0, match.start())
            last = first + match.group(0).count("\n") if self.multiline else first
            for number in range(first, last + 1):
                matched.setdefault(number, []).append(match.group(0))
        if self.mode != "content" or not count:
            return [], count
        prefix = f"{label}:" if label else ""
        out: list[str] = []
        if self.only:
            for number in sorted(matched):
                for part in matched[number]:
                    out.append(f"{prefix}{number + 1}:{part}" if self.numbers
                               else f"{prefix}{part}")
            return out, count
        shown: set[int] = set()
        for number in sorted(matched):
            for near in range(max(0, number - self.before),
                              min(len(lines), number + self.after + 1)):
                shown.add(near)
        previous = None
        for number in sorted(shown):
            if previous is not None and number != previous + 1 and self.context:
                out.append("--")
            mark = ":" if number in matched else "-"
            sep = f"{label}{mark}" if label else ""
            out.append(f"{sep}{number + 1}{mark}{lines[number]}" if self.numbers
                       else f"{sep}{lines[number]}")
            previous = number
        return out, count

    def page(self, entries: list[str]) -> list[str]:
        entries = entries[self.offset:]
        return entries[:self.head] if self.head else entries


def _split_glob(glob: str) -> list[str]:
    """`*.{ts,tsx} *.js` -> patterns (spaces separate, braces stay whole)."""
    return [part for part in re.split(r"\s+(?![^{]*})", glob.strip()) if part]


def _number(given: Mapping[str, Any], key: str, default: int) -> int:
    value = given.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ToolError(f"`{key}` must be a number of 0 or more")
    return int(value)


def _text_of(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_FILE_BYTES or b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    root = WorkspaceRoot.at(request["root"])
    target = Path(request["path"])
    try:
        if not root.contains(os.path.realpath(target)):
            raise ToolError(f"{target} is outside the workspace ({root.path})")
        answer: dict[str, Any] = {"text": search(root, target, request["input"])}
    except ToolError as exc:
        answer = {"error": str(exc)}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
