"""Anthropic's code execution server tool, run in the bubblewrap sandbox.

`code_execution_20250522` offers one tool, `code_execution` (Python); the later versions
(`_20250825`, `_20260120`, `_20260521`) offer `bash_code_execution` and
`text_editor_code_execution`. Each call runs in a container (see containers.py) whose files
persist between calls and requests. Results use the Anthropic SDK's block shapes; a call
that cannot run is an error block with one of its codes (`unavailable`,
`execution_time_exceeded`, `invalid_tool_input`, `file_not_found`).

Settings: `server_tools.code_execution` (off unless `enabled: true`):
    timeout_s, cpu_s, memory_mb, max_file_mb, max_processes, tmp_mb, max_output_bytes,
    max_concurrent, container_ttl_s, containers_dir, bwrap, python, ro_binds,
    requests_per_minute
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import InvalidRequest
from ..settings import SettingsError
from .base import Tool, ToolContext, ToolOutcome, ToolSpec
from .containers import Container, ContainerNotFound, ContainerStore
from .paths import ToolError, WorkspaceRoot
from .registry import Declaration, StaticToolset
from .sandbox import Limits, Mount, Sandbox, SandboxUnavailable
from .text_editor import EditorError, run_editor

CODE_EXECUTION_TYPES = ("code_execution_20250522", "code_execution_20250825",
                        "code_execution_20260120", "code_execution_20260521")
MOUNT_POINT = "/workspace"
_PROGRAM = "/run/sandbox/main.py"
_SCRIPT = "/run/sandbox/command.sh"


class UnknownToolType(ValueError):
    """A code-execution `type` this gateway does not know (the loop answers 400)."""


@dataclass(frozen=True, slots=True)
class CodeExecutionConfig:
    enabled: bool = False
    timeout_s: float = 30.0
    cpu_s: int = 60
    memory_mb: int = 1024
    max_file_mb: int = 100
    max_processes: int = 128
    tmp_mb: int = 64
    max_output_bytes: int = 100_000
    max_concurrent: int = 4
    container_ttl_s: float = 3600.0
    containers_dir: str = ""
    bwrap: str = "bwrap"
    python: str = "python3"
    ro_binds: tuple[str, ...] = ()
    # Calls per minute per client key and tool (0: unlimited); over it: too_many_requests.
    requests_per_minute: int = 0

    @classmethod
    def from_settings(cls, server_tools: Mapping[str, Any]) -> CodeExecutionConfig:
        raw = server_tools.get("code_execution") or {}
        if not isinstance(raw, Mapping):
            raise SettingsError("server_tools.code_execution must be a mapping")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingsError(f"server_tools.code_execution: unknown setting(s) "
                                f"{', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            values[name] = _coerce(name, getattr(cls(), name), value)
        return cls(**values)

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.timeout_s, cpu_s=self.cpu_s,
                      memory_bytes=self.memory_mb << 20, file_size_bytes=self.max_file_mb << 20,
                      max_processes=self.max_processes, tmp_bytes=self.tmp_mb << 20,
                      max_output_bytes=self.max_output_bytes)


@dataclass(slots=True)
class _Kind:
    block: str
    result: str
    error: str


_PYTHON = _Kind("code_execution_tool_result", "code_execution_result",
                "code_execution_tool_result_error")
_BASH = _Kind("bash_code_execution_tool_result", "bash_code_execution_result",
              "bash_code_execution_tool_result_error")
_EDITOR = _Kind("text_editor_code_execution_tool_result", "",
                "text_editor_code_execution_tool_result_error")

_ENVIRONMENT = (f"It runs in a sandbox without network access; the working directory "
                f"{MOUNT_POINT} and its files persist between calls.")
PYTHON_SPEC = ToolSpec(
    name="code_execution",
    description=f"Run Python 3 code and return its stdout, stderr and exit code. {_ENVIRONMENT}",
    input_schema={"type": "object", "properties": {
        "code": {"type": "string", "description": "The Python code to run"}},
        "required": ["code"], "additionalProperties": False})
BASH_SPEC = ToolSpec(
    name="bash_code_execution",
    description=f"Run a bash command and return its stdout, stderr and exit code. "
                f"{_ENVIRONMENT}",
    input_schema={"type": "object", "properties": {
        "command": {"type": "string", "description": "The bash command to run"}},
        "required": ["command"], "additionalProperties": False})
EDITOR_SPEC = ToolSpec(
    name="text_editor_code_execution",
    description=f"View, create or edit a text file in {MOUNT_POINT}: `view` shows a file "
                "(optionally `view_range` [start, end], 1-based, end -1 for the end) or lists "
                "a folder; `create` writes `file_text`; `str_replace` replaces the one "
                "occurrence of `old_str` with `new_str`.",
    input_schema={"type": "object", "properties": {
        "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
        "path": {"type": "string", "description": f"A path in {MOUNT_POINT} (or relative)"},
        "file_text": {"type": "string"},
        "old_str": {"type": "string"},
        "new_str": {"type": "string"},
        "view_range": {"type": "array", "items": {"type": "integer"},
                       "minItems": 2, "maxItems": 2}},
        "required": ["command", "path"], "additionalProperties": False})


@dataclass(slots=True)
class CodeExecutionTool:
    """One tool offered to the model; `run` goes to the shared CodeExecution."""

    spec: ToolSpec
    handler: Callable[[Mapping[str, Any], ToolContext], Awaitable[ToolOutcome]]

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        return await self.handler(tool_input, ctx)


class CodeExecution:
    """Built once per gateway: the sandbox and the container store every request shares."""

    def __init__(self, config: CodeExecutionConfig, *, sandbox: Sandbox | None = None,
                 containers: ContainerStore | None = None) -> None:
        self.config = config
        self.sandbox = sandbox or Sandbox(bwrap=config.bwrap, ro_binds=config.ro_binds,
                                          max_concurrent=config.max_concurrent)
        self.containers = containers or ContainerStore(config.containers_dir or None,
                                                       ttl_s=config.container_ttl_s)

    @classmethod
    def from_settings(cls, server_tools: Mapping[str, Any]) -> CodeExecution | None:
        """None when code execution is off (the default)."""
        config = CodeExecutionConfig.from_settings(server_tools)
        return cls(config) if config.enabled else None

    def tools(self, tool_type: str) -> list[Tool]:
        rate = self.config.requests_per_minute
        if tool_type == "code_execution_20250522":
            return [CodeExecutionTool(replace(PYTHON_SPEC, requests_per_minute=rate),
                                      self.run_python)]
        if tool_type in CODE_EXECUTION_TYPES:
            return [CodeExecutionTool(replace(BASH_SPEC, requests_per_minute=rate),
                                      self.run_bash),
                    CodeExecutionTool(replace(EDITOR_SPEC, requests_per_minute=rate),
                                      self.run_editor)]
        raise UnknownToolType(f"unknown code execution tool type {tool_type!r}; this gateway "
                              f"knows {', '.join(CODE_EXECUTION_TYPES)}")

    async def run_python(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        code = tool_input.get("code")
        if not isinstance(code, str):
            return _error(_PYTHON, "invalid_tool_input", "`code` must be a string")
        return await self._execute(_PYTHON, [self.config.python, _PROGRAM],
                                   {_PROGRAM: code.encode()}, ctx)

    async def run_bash(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return _error(_BASH, "invalid_tool_input", "`command` must be a non-empty string")
        return await self._execute(_BASH, ["/bin/bash", _SCRIPT], {_SCRIPT: command.encode()},
                                   ctx)

    async def run_editor(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        prepared = await self._prepare(_EDITOR, ctx)
        if isinstance(prepared, ToolOutcome):
            return prepared
        try:
            root = WorkspaceRoot.at(prepared.files)
            done = await asyncio.to_thread(run_editor, root, MOUNT_POINT, tool_input,
                                           self.config.max_output_bytes * 10)
        except EditorError as exc:
            return _error(_EDITOR, exc.code, str(exc))
        except (ToolError, OSError) as exc:
            return _error(_EDITOR, "invalid_tool_input", str(exc))
        return ToolOutcome(result_block={"type": _EDITOR.block, "content": done.content},
                           model_text=done.model_text)

    async def _prepare(self, kind: _Kind, ctx: ToolContext) -> Container | ToolOutcome:
        """The container for this call (reused or new), or the error outcome."""
        reason = await self.sandbox.check()
        if reason:
            return _error(kind, "unavailable", f"code execution is unavailable: {reason}")
        try:
            container = self.containers.resolve(ctx.container_id, ctx.key_id)
        except ContainerNotFound as exc:
            return _error(kind, "unavailable", str(exc))
        except OSError as exc:
            return _error(kind, "unavailable", f"cannot prepare a container: {exc}")
        ctx.container_id = container.id
        ctx.message_fields["container"] = container.info()
        return container

    async def _execute(self, kind: _Kind, argv: list[str], files: Mapping[str, bytes],
                       ctx: ToolContext) -> ToolOutcome:
        prepared = await self._prepare(kind, ctx)
        if isinstance(prepared, ToolOutcome):
            return prepared
        limits = self.config.limits
        try:
            result = await self.sandbox.run(
                argv, mount=Mount(prepared.files, MOUNT_POINT), limits=limits, files=files,
                env={"PYTHONPATH": MOUNT_POINT, "PYTHONDONTWRITEBYTECODE": "1"})
        except (SandboxUnavailable, OSError) as exc:
            return _error(kind, "unavailable", f"code execution is unavailable: {exc}")
        if result.timed_out:
            return _error(kind, "execution_time_exceeded",
                          f"the code ran longer than {limits.timeout_s:g} s and was stopped")
        content = {"type": kind.result, "stdout": result.stdout, "stderr": result.stderr,
                   "return_code": result.return_code, "content": []}
        return ToolOutcome(result_block={"type": kind.block, "content": content},
                           model_text=_run_text(content))


class CodeExecutionProvider:
    """Code execution as the tool loop's registry sees it (registry.ToolProvider).

    Registered whether or not the feature is on, so a declaration on a gateway without it
    gets a 400 that says so. `open` also checks the request's `container` (an id, or
    `{"id": ...}`): an unknown, expired or other key's container is a 400."""

    name = "code_execution"
    tool_types = frozenset(CODE_EXECUTION_TYPES)
    type_prefixes: tuple[str, ...] = ("code_execution_",)
    request_fields: tuple[str, ...] = ()
    result_types = frozenset({_PYTHON.block, _BASH.block, _EDITOR.block})

    def __init__(self, service: CodeExecution | None) -> None:
        self.service = service

    async def open(self, declarations: Sequence[Declaration], request: Mapping[str, Any],
                   ctx: ToolContext) -> StaticToolset:
        if not declarations:
            return StaticToolset([])
        first = declarations[0]
        if self.service is None:
            raise InvalidRequest(f"{first.path}: code execution is not enabled on this gateway "
                                 "(server_tools.code_execution.enabled)")
        if len(declarations) > 1:
            raise InvalidRequest(f"{declarations[1].path}: code execution is declared twice")
        if first.tool.get("name") != "code_execution":
            raise InvalidRequest(f"{first.path}.name: must be 'code_execution'")
        container_id = _requested_container(request.get("container"))
        if container_id is not None:
            try:
                container = self.service.containers.get(container_id, ctx.key_id)
            except ContainerNotFound as exc:
                raise InvalidRequest(f"container: {exc}") from None
            ctx.container_id = container.id
            ctx.message_fields["container"] = container.info()
        return StaticToolset(self.service.tools(str(first.tool.get("type"))))

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        content = block.get("content")
        if not isinstance(content, Mapping):
            return f"[{block.get('type')}]", False
        kind = str(content.get("type", ""))
        if kind.endswith("_error"):
            message = content.get("error_message")
            return (f"Error ({content.get('error_code')})"
                    + (f": {message}" if message else "")), True
        if "return_code" in content:
            return _run_text(content), False
        if kind == "text_editor_code_execution_view_result":
            return str(content.get("content", "")), False
        if kind == "text_editor_code_execution_create_result":
            return ("File updated" if content.get("is_file_update") else "File created"), False
        lines = content.get("lines")
        return "Edited:\n" + "\n".join(map(str, lines if isinstance(lines, list) else [])), \
            False


def code_execution_tools(tool_type: str, service: CodeExecution) -> list[Tool]:
    """The tools a `tools` entry of this type offers (UnknownToolType if none)."""
    return service.tools(tool_type)


def _requested_container(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        raw = raw.get("id")
        if raw is None:
            return None
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest("container: must be a container id or {\"id\": ...}")
    return raw


def _run_text(content: Mapping[str, Any]) -> str:
    text = [f"return_code: {content.get('return_code')}"]
    if content.get("stdout"):
        text.append(f"stdout:\n{content['stdout']}")
    if content.get("stderr"):
        text.append(f"stderr:\n{content['stderr']}")
    return "\n".join(text)


def _error(kind: _Kind, code: str, message: str) -> ToolOutcome:
    content: dict[str, Any] = {"type": kind.error, "error_code": code}
    if kind is _EDITOR:
        content["error_message"] = message
    return ToolOutcome(result_block={"type": kind.block, "content": content},
                       model_text=f"Error ({code}): {message}", is_error=True, error_code=code,
                       counted=code not in ("unavailable", "invalid_tool_input"))


def _coerce(name: str, default: Any, value: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(value).lower() in ("1", "true", "yes", "on")
            raise ValueError("expected true or false")
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(default, str):
            return str(value)
        number = type(default)(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"server_tools.code_execution.{name}: cannot use {value!r} "
                            f"({exc})") from exc
    if number < 0 or (number == 0 and name != "requests_per_minute"):
        raise SettingsError(f"server_tools.code_execution.{name} must be positive")
    return number


__all__ = ["CODE_EXECUTION_TYPES", "CodeExecution", "CodeExecutionConfig",
           "CodeExecutionProvider", "UnknownToolType", "code_execution_tools"]
