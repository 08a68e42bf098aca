"""The workspace's Bash: an allow-list of commands, run in the bubblewrap sandbox.

The allow-list is policy (what an operator lets a model run); the sandbox is the boundary
(what any command can reach: the workspace root, read-only system files, no network unless
`bash.network` is on). So the check errs on the side of refusing: every simple command of
the line (pipelines, lists, `if`/`while` bodies) must start with an allowed name, and
command substitution (`$(...)`, backquotes, `<(...)`) is refused because it hides commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .paths import ToolError, WorkspaceRoot
from .sandbox import Limits, Mount, Sandbox, SandboxUnavailable

# Inspecting and editing files, version control, running a project's tests.
DEFAULT_ALLOW = (
    "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "find", "echo", "printf",
    "pwd", "sort", "uniq", "cut", "tr", "diff", "cmp", "sed", "awk", "true", "false", "test",
    "[", "[[", "basename", "dirname", "realpath", "readlink", "stat", "file", "date", "mkdir",
    "touch", "cp", "mv", "rm", "rmdir", "ln", "chmod", "tee", "seq", "tar", "gzip", "gunzip",
    "zcat", "sha256sum", "md5sum", "base64", "cd", "git", "make", "python", "python3",
    "pytest",
)
_KEYWORDS = {"!", "{", "}", "if", "then", "else", "elif", "fi", "while", "until", "do",
             "done", "time"}
_UNSUPPORTED = {"case", "select", "function", "coproc"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_SCRIPT = "/run/sandbox/command.sh"


@dataclass(frozen=True, slots=True)
class BashPolicy:
    allow: tuple[str, ...] = DEFAULT_ALLOW  # "*" allows every command
    network: bool = False
    timeout_s: float = 120.0  # when the call gives none
    max_timeout_s: float = 600.0
    max_output: int = 30_000
    memory_mb: int = 2048
    max_processes: int = 256


def check_command(command: str, allow: tuple[str, ...]) -> None:
    """ToolError naming the first command that is not allowed."""
    if "*" in allow:
        return
    for name in command_names(command):
        if name not in allow:
            raise ToolError(f"command not allowed in this workspace: {name!r} (allowed: "
                            f"{', '.join(allow)})")


def command_names(command: str) -> list[str]:
    """The command word of every simple command in `command`."""
    names: list[str] = []
    expect = True  # the next word starts a command
    skip_target = False  # the next word is a redirection's target
    for_header = False
    for kind, token in _tokens(command):
        if kind == "op":
            expect, for_header = True, False
            continue
        if kind == "redirect":
            skip_target = True
            continue
        if skip_target:
            skip_target = False
            continue
        if for_header:
            if token == "do":
                for_header = False
            continue
        if not expect:
            continue
        if _ASSIGNMENT.match(token) or token in _KEYWORDS:
            continue
        if token == "for":
            for_header = True
            continue
        if token in _UNSUPPORTED:
            raise ToolError(f"`{token}` is not supported by this workspace's Bash")
        names.append(token)
        expect = False
    return names


async def run_bash(sandbox: Sandbox, root: WorkspaceRoot, policy: BashPolicy,
                   command: str, timeout_ms: float | None) -> tuple[str, bool]:
    """(output for the model, is_error)."""
    check_command(command, policy.allow)
    timeout = policy.timeout_s if timeout_ms is None else max(0.001, timeout_ms / 1000)
    timeout = min(timeout, policy.max_timeout_s)
    limits = Limits(timeout_s=timeout, cpu_s=int(timeout) + 1,
                    memory_bytes=policy.memory_mb << 20, max_processes=policy.max_processes,
                    max_output_bytes=policy.max_output)
    try:
        result = await sandbox.run(["/bin/bash", _SCRIPT],
                                   mount=Mount(root.path, str(root.path)), limits=limits,
                                   files={_SCRIPT: command.encode()}, network=policy.network)
    except SandboxUnavailable as exc:
        raise ToolError(f"Bash is unavailable: {exc}") from None
    parts = [part for part in (result.stdout.rstrip("\n"), result.stderr.rstrip("\n")) if part]
    if result.timed_out:
        parts.append(f"Command timed out after {timeout:g} s and was stopped")
        return "\n".join(parts), True
    if result.return_code != 0:
        parts.append(f"Exit code {result.return_code}")
    return "\n".join(parts) or "(no output)", result.return_code != 0


def _tokens(command: str) -> list[tuple[str, str]]:
    """("word" | "op" | "redirect", text) with shell quoting; here-document bodies and
    comments dropped. Refuses command substitution."""
    tokens: list[tuple[str, str]] = []
    heredocs: list[tuple[str, bool]] = []  # (delimiter, strip tabs) pending at newline
    i, n = 0, len(command)
    word: list[str] = []
    in_word = False

    def flush() -> None:
        nonlocal in_word
        if in_word:
            tokens.append(("word", "".join(word)))
            word.clear()
            in_word = False

    while i < n:
        char = command[i]
        if char == "\\" and i + 1 < n:
            if command[i + 1] != "\n":
                word.append(command[i + 1])
                in_word = True
            i += 2
            continue
        if char == "'":
            end = command.find("'", i + 1)
            if end == -1:
                raise ToolError("unterminated single quote in the command")
            word.append(command[i + 1:end])
            in_word = True
            i = end + 1
            continue
        if char == '"':
            i = _double_quoted(command, i + 1, word)
            in_word = True
            continue
        if char == "`" or (command.startswith("$(", i) and not command.startswith("$((", i)):
            raise ToolError("command substitution ($(...) or backquotes) is not allowed")
        if char in "<>" and command.startswith("(", i + 1):
            raise ToolError("process substitution (<(...) or >(...)) is not allowed")
        if char == "#" and not in_word:
            while i < n and command[i] != "\n":
                i += 1
            continue
        if char in " \t\r":
            flush()
            i += 1
            continue
        if char == "\n":
            flush()
            tokens.append(("op", "\n"))
            i += 1
            for delimiter, strip in heredocs:
                i = _skip_heredoc(command, i, delimiter, strip)
            heredocs.clear()
            continue
        if char in "<>" or command.startswith("&>", i):
            if in_word and "".join(word).isdigit():
                word.clear()  # a file descriptor number: part of the redirection
                in_word = False
            flush()
            redirect = re.match(r"<<<|<<-|<<|>>|>&|<&|<>|>\||&>>|&>|<|>", command[i:])
            assert redirect is not None
            operator = redirect.group(0)
            tokens.append(("redirect", operator))
            i += redirect.end()
            if operator in ("<<", "<<-"):
                delimiter, i = _heredoc_word(command, i)
                heredocs.append((delimiter, operator == "<<-"))
                tokens.append(("word", delimiter))
            continue
        operator_match = re.match(r"\|\||&&|;;|\|&|[|&;()]", command[i:])
        if operator_match:
            flush()
            tokens.append(("op", operator_match.group(0)))
            i += operator_match.end()
            continue
        if command.startswith("$((", i):
            end = command.find("))", i)
            arithmetic = command[i:end + 2 if end != -1 else n]
            if "$(" in arithmetic[3:] or "`" in arithmetic:
                raise ToolError("command substitution ($(...) or backquotes) is not allowed")
            word.append(arithmetic)
            in_word = True
            i = end + 2 if end != -1 else n
            continue
        word.append(char)
        in_word = True
        i += 1
    flush()
    return tokens


def _double_quoted(command: str, i: int, word: list[str]) -> int:
    while i < len(command):
        char = command[i]
        if char == '"':
            return i + 1
        if char == "\\" and i + 1 < len(command):
            word.append(command[i + 1])
            i += 2
            continue
        if char == "`" or (command.startswith("$(", i) and not command.startswith("$((", i)):
            raise ToolError("command substitution ($(...) or backquotes) is not allowed")
        word.append(char)
        i += 1
    raise ToolError("unterminated double quote in the command")


def _heredoc_word(command: str, i: int) -> tuple[str, int]:
    match = re.match(r"[ \t]*(['\"]?)([^\s'\"<>|&;()]+)\1", command[i:])
    if not match:
        raise ToolError("a here-document needs a delimiter word")
    return match.group(2), i + match.end()


def _skip_heredoc(command: str, i: int, delimiter: str, strip: bool) -> int:
    while i < len(command):
        end = command.find("\n", i)
        line = command[i:] if end == -1 else command[i:end]
        i = len(command) if end == -1 else end + 1
        if (line.lstrip("\t") if strip else line) == delimiter:
            return i
    return i
