"""The workspace toolset: Claude Code's tools (Read, Write, Edit, MultiEdit, Glob, Grep,
LS, Bash, WebFetch, WebSearch, TodoWrite, NotebookRead, NotebookEdit) over one directory,
as the built-in MCP server `workspace`.

Only client keys given a workspace get it. Settings (the `workspace` section):

```yaml
workspace:
  root: /srv/project          # no root: no workspace
  keys: [team-key]            # client keys (or their key_... ids); omitted: every key
  tools: [Read, Grep, Bash]   # omitted: all of them
  max_output: 200000          # characters a result may hold
  max_file_bytes: 10485760    # what Read/Edit load
  grep_timeout_s: 20
  bash: {allow: [ls, cat, git], network: false, timeout_s: 120, max_timeout_s: 600,
         max_output: 30000, memory_mb: 2048, max_processes: 256}
  profiles:                   # more workspaces, same keys; the first that matches wins
    other: {root: /srv/other, keys: [other-key]}
```

WebFetch and WebSearch are handed to the gateway's own server tools (web_fetch,
web_search) through `WebDelegate`s the tool loop supplies; without them they are not
offered. A failed call is an `is_error` result whose text says why.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import SettingsError
from . import notebooks, workspace_files
from .base import MCP_TOOL_USE, Tool, ToolContext, ToolOutcome, ToolSpec
from .mcp_session import CallResult, McpToolDef
from .paths import ToolError, WorkspaceRoot
from .sandbox import Sandbox
from .workspace_bash import BashPolicy, run_bash
from .workspace_grep import run_grep
from .workspace_schemas import DESCRIPTIONS, SCHEMAS, TOOL_NAMES

WORKSPACE_SERVER = "workspace"
_TODO_KEYS = 1024

# A web tool's work, done by the loop's server tool: (the workspace tool's input, ctx).
WebDelegate = Callable[[Mapping[str, Any], ToolContext], Awaitable[ToolOutcome]]


@dataclass(frozen=True, slots=True)
class WorkspaceProfile:
    name: str
    root: Path
    keys: frozenset[str] | None = None  # key ids allowed; None: every key
    tools: tuple[str, ...] = TOOL_NAMES
    bash: BashPolicy = field(default_factory=BashPolicy)
    max_output: int = 200_000
    max_file_bytes: int = 10 << 20
    grep_timeout_s: float = 20.0

    def permits(self, key_id: str) -> bool:
        return self.keys is None or key_id in self.keys


class WorkspaceToolset:
    """One workspace: the tools to offer (`list_tools`, `tools`) and calls to them."""

    server_name = WORKSPACE_SERVER

    def __init__(self, profile: WorkspaceProfile, *, sandbox: Sandbox | None = None,
                 web_fetch: WebDelegate | None = None,
                 web_search: WebDelegate | None = None) -> None:
        self.profile = profile
        self.root = WorkspaceRoot.at(profile.root)
        self.sandbox = sandbox or Sandbox()
        self.web_fetch = web_fetch
        self.web_search = web_search
        self._todos: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def with_web(self, *, web_fetch: WebDelegate | None,
                 web_search: WebDelegate | None) -> WorkspaceToolset:
        """This toolset (same root, sandbox and todo lists) with web tools for one request."""
        bound = copy.copy(self)  # shallow: the todo lists stay shared
        bound.web_fetch, bound.web_search = web_fetch, web_search
        return bound

    @property
    def names(self) -> list[str]:
        web = {"WebFetch": self.web_fetch, "WebSearch": self.web_search}
        return [name for name in self.profile.tools if name not in web or web[name]]

    def list_tools(self) -> list[ToolSpec]:
        """Specs as MCP tools of the `workspace` server, named `workspace__<Tool>`."""
        return [ToolSpec(name=f"{WORKSPACE_SERVER}__{name}", description=DESCRIPTIONS[name],
                         input_schema=SCHEMAS[name], block_type=MCP_TOOL_USE,
                         display_name=name, server_name=WORKSPACE_SERVER)
                for name in self.names]

    def tools(self) -> list[Tool]:
        return [WorkspaceTool(spec, self) for spec in self.list_tools()]

    async def call(self, name: str, tool_input: Mapping[str, Any],
                   ctx: ToolContext) -> ToolOutcome:
        """Run one tool (`Read` or `workspace__Read`); failures are is_error outcomes."""
        name = name.removeprefix(f"{WORKSPACE_SERVER}__")
        if name not in self.names:
            return _outcome(f"Error: no workspace tool is called {name!r}", True,
                            "unknown_tool")
        if not isinstance(tool_input, Mapping):
            return _outcome("Error: the tool input must be an object", True, "invalid_input")
        try:
            if name in ("WebFetch", "WebSearch"):
                return await self._web(name, tool_input, ctx)
            text, is_error = await self._run(name, tool_input, ctx)
        except ToolError as exc:
            return _outcome(f"Error: {exc}", True, "tool_error")
        except OSError as exc:
            return _outcome(f"Error: {exc.strerror or exc}", True, "tool_error")
        return _outcome(_capped(text, self.profile.max_output), is_error,
                        "tool_error" if is_error else None)

    async def _run(self, name: str, tool_input: Mapping[str, Any],
                   ctx: ToolContext) -> tuple[str, bool]:
        root, limits = self.root, workspace_files.FileLimits(self.profile.max_file_bytes)
        if name == "Bash":
            command = tool_input.get("command")
            if not isinstance(command, str) or not command.strip():
                raise ToolError("`command` is required")
            timeout = tool_input.get("timeout")
            if timeout is not None and (isinstance(timeout, bool)
                                        or not isinstance(timeout, int | float)):
                raise ToolError("`timeout` must be a number of milliseconds")
            return await run_bash(self.sandbox, root, self.profile.bash, command, timeout)
        if name == "Grep":
            return await run_grep(root, tool_input, self.profile.grep_timeout_s), False
        if name == "TodoWrite":
            return self._todo_write(tool_input, ctx), False
        work: dict[str, Callable[[], str]] = {
            "Read": lambda: workspace_files.read(root, tool_input, limits),
            "Write": lambda: workspace_files.write(root, tool_input),
            "Edit": lambda: workspace_files.edit(root, tool_input, limits),
            "MultiEdit": lambda: workspace_files.multi_edit(root, tool_input, limits),
            "LS": lambda: workspace_files.ls(root, tool_input),
            "Glob": lambda: workspace_files.glob(root, tool_input),
            "NotebookRead": lambda: notebooks.read_tool(root, tool_input, limits.max_file_bytes),
            "NotebookEdit": lambda: notebooks.edit_tool(root, tool_input, limits.max_file_bytes),
        }
        return await asyncio.to_thread(work[name]), False

    async def _web(self, name: str, tool_input: Mapping[str, Any],
                   ctx: ToolContext) -> ToolOutcome:
        delegate = self.web_fetch if name == "WebFetch" else self.web_search
        assert delegate is not None  # not offered without one
        done = await delegate(tool_input, ctx)
        text = done.model_text if not done.is_error else f"Error: {done.model_text}"
        return ToolOutcome(result_block=_result_block(text, done.is_error), model_text=text,
                           is_error=done.is_error, error_code=done.error_code, counted=False,
                           urls=done.urls)

    def _todo_write(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> str:
        todos = tool_input.get("todos")
        if not isinstance(todos, list):
            raise ToolError("`todos` must be a list")
        for i, todo in enumerate(todos):
            if (not isinstance(todo, Mapping) or not todo.get("content")
                    or todo.get("status") not in ("pending", "in_progress", "completed")):
                raise ToolError(f"todos[{i}] needs `content` and a `status` of pending, "
                                "in_progress or completed")
        self._todos[ctx.key_id] = [dict(todo) for todo in todos]
        self._todos.move_to_end(ctx.key_id)
        while len(self._todos) > _TODO_KEYS:
            self._todos.popitem(last=False)
        counts = {s: sum(t["status"] == s for t in todos)
                  for s in ("pending", "in_progress", "completed")}
        return ("Todos have been modified successfully: "
                f"{counts['pending']} pending, {counts['in_progress']} in progress, "
                f"{counts['completed']} completed.")

    def todos(self, key_id: str) -> list[dict[str, Any]]:
        return list(self._todos.get(key_id, []))


@dataclass(slots=True)
class WorkspaceTool:
    """One workspace tool as a gateway-run `Tool` (spec + run)."""

    spec: ToolSpec
    toolset: WorkspaceToolset

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        return await self.toolset.call(self.spec.client_name, tool_input, ctx)


@dataclass(slots=True)
class WorkspaceMcpBackend:
    """The toolset as the MCP connector's backend (mcp_plan.McpBackend), bound to one
    request's context, so the `workspace` server can sit beside connected MCP servers."""

    toolset: WorkspaceToolset
    ctx: ToolContext

    async def list_tools(self) -> list[McpToolDef]:
        return [McpToolDef(spec.client_name, spec.description, spec.input_schema)
                for spec in self.toolset.list_tools()]

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> CallResult:
        outcome = await self.toolset.call(name, arguments, self.ctx)
        return CallResult(outcome.is_error, (outcome.model_text,))


class Workspaces:
    """Every configured workspace, and which one a client key gets."""

    def __init__(self, profiles: list[WorkspaceProfile], *,
                 sandbox: Sandbox | None = None) -> None:
        self.profiles = profiles
        self.sandbox = sandbox or Sandbox()
        self._toolsets: dict[str, WorkspaceToolset] = {}

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], *,
                      sandbox: Sandbox | None = None) -> Workspaces:
        """Parse the `workspace` settings section (SettingsError naming a bad entry)."""
        if not isinstance(raw, Mapping):
            raise SettingsError("workspace must be a mapping")
        unknown = sorted(set(raw) - _PROFILE_KEYS)
        if unknown:
            raise SettingsError(f"workspace: unknown setting(s) {', '.join(unknown)}")
        profiles: list[WorkspaceProfile] = []
        if raw.get("root") is not None:
            profiles.append(parse_profile("default", raw, "workspace"))
        named = raw.get("profiles") or {}
        if not isinstance(named, Mapping):
            raise SettingsError("workspace.profiles must be a mapping of name -> workspace")
        for name, entry in named.items():
            profiles.append(parse_profile(str(name), entry, f"workspace.profiles.{name}"))
        return cls(profiles, sandbox=sandbox)

    def __bool__(self) -> bool:
        return bool(self.profiles)

    def profile_for(self, key_id: str) -> WorkspaceProfile | None:
        return next((p for p in self.profiles if p.permits(key_id)), None)

    def toolset_for(self, key_id: str, *, web_fetch: WebDelegate | None = None,
                    web_search: WebDelegate | None = None) -> WorkspaceToolset | None:
        """The key's workspace (None: it has none), with this request's web tools."""
        profile = self.profile_for(key_id)
        if profile is None:
            return None
        toolset = self._toolsets.get(profile.name)
        if toolset is None:
            toolset = WorkspaceToolset(profile, sandbox=self.sandbox)
            self._toolsets[profile.name] = toolset
        if web_fetch is None and web_search is None:
            return toolset
        return toolset.with_web(web_fetch=web_fetch, web_search=web_search)


_PROFILE_KEYS = {"root", "keys", "tools", "bash", "max_output", "max_file_bytes",
                 "grep_timeout_s", "profiles"}


def parse_profile(name: str, raw: Any, where: str) -> WorkspaceProfile:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where} must be a mapping")
    unknown = sorted(set(raw) - _PROFILE_KEYS - ({"profiles"} if name == "default" else set()))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    root = raw.get("root")
    if not isinstance(root, str) or not root:
        raise SettingsError(f"{where}.root must be a directory path")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SettingsError(f"{where}.root: {root} is not a directory")
    tools = _names(raw.get("tools"), f"{where}.tools") or TOOL_NAMES
    unknown_tools = sorted(set(tools) - set(TOOL_NAMES))
    if unknown_tools:
        raise SettingsError(f"{where}.tools: unknown tool(s) {', '.join(unknown_tools)} "
                            f"(known: {', '.join(TOOL_NAMES)})")
    keys = raw.get("keys")
    return WorkspaceProfile(
        name=name, root=path.resolve(),
        keys=None if keys is None else _key_ids(keys, f"{where}.keys"),
        tools=tuple(t for t in TOOL_NAMES if t in tools),
        bash=_bash_policy(raw.get("bash"), f"{where}.bash"),
        max_output=_positive(raw.get("max_output", 200_000), f"{where}.max_output", int),
        max_file_bytes=_positive(raw.get("max_file_bytes", 10 << 20),
                                 f"{where}.max_file_bytes", int),
        grep_timeout_s=_positive(raw.get("grep_timeout_s", 20.0), f"{where}.grep_timeout_s",
                                 float))


def _bash_policy(raw: Any, where: str) -> BashPolicy:
    if raw is None:
        return BashPolicy()
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where} must be a mapping")
    defaults = BashPolicy()
    known = {f.name for f in dataclasses.fields(BashPolicy)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(defaults, key)
        if key == "allow":
            values[key] = _names(value, f"{where}.allow") or ()
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise SettingsError(f"{where}.{key} must be true or false")
            values[key] = value
        else:
            values[key] = _positive(value, f"{where}.{key}", type(default))
    return BashPolicy(**values)


def _names(raw: Any, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(f"{where} must be a list of names")
    return tuple(item.strip() for item in items if item.strip())


def _key_ids(raw: Any, where: str) -> frozenset[str]:
    from ..app import key_id  # the gateway's own naming of client keys

    # An entry may be a client key or its id (key_..., "anonymous" without client keys).
    return frozenset(name for k in _names(raw, where) or () for name in (k, key_id(k)))


def _positive(value: Any, where: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or number <= 0:
        raise SettingsError(f"{where} must be a positive number")
    return number


def _result_block(text: str, is_error: bool) -> dict[str, Any]:
    return {"type": "mcp_tool_result", "is_error": is_error,
            "content": [{"type": "text", "text": text}]}


def _outcome(text: str, is_error: bool, code: str | None) -> ToolOutcome:
    return ToolOutcome(result_block=_result_block(text, is_error), model_text=text,
                       is_error=is_error, error_code=code, counted=False)


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters not shown)"
