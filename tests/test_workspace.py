"""The workspace toolset: Claude Code's tools over one root, their happy paths, and the
refusals (paths out of the root, symlinks out, commands off the allow-list, the network)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from anthropic.types.beta import BetaMCPToolResultBlock

from openrouter_anthropic.settings import SettingsError
from openrouter_anthropic.tools.base import ToolContext, ToolOutcome
from openrouter_anthropic.tools.sandbox import Sandbox
from openrouter_anthropic.tools.workspace import (
    WorkspaceMcpBackend,
    WorkspaceProfile,
    Workspaces,
    WorkspaceToolset,
)
from openrouter_anthropic.tools.workspace_bash import BashPolicy
from openrouter_anthropic.tools.workspace_schemas import TOOL_NAMES
from sandbox_support import require_sandbox, sandbox_owned, shared_tmpdir

CTX = ToolContext(request_id="req_test", key_id="key_test")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("import os\n\ndef main():\n    return 42\n")
    (tmp_path / "src" / "util.ts").write_text("export const x = 1;\n")
    (tmp_path / "README.md").write_text("# Demo\nSome text\nMAIN entry\n")
    (tmp_path / ".hidden").write_text("main secret\n")
    return tmp_path


def toolset(root: Path, **profile: Any) -> WorkspaceToolset:
    return WorkspaceToolset(WorkspaceProfile(name="test", root=root, **profile))


async def call(ts: WorkspaceToolset, name: str, **tool_input: Any) -> ToolOutcome:
    outcome = await ts.call(name, tool_input, CTX)
    BetaMCPToolResultBlock.model_validate({**outcome.result_block, "tool_use_id": "mcptoolu_x"})
    assert outcome.model_text == outcome.result_block["content"][0]["text"]
    return outcome


async def ok(ts: WorkspaceToolset, name: str, **tool_input: Any) -> str:
    outcome = await call(ts, name, **tool_input)
    assert not outcome.is_error, outcome.model_text
    return outcome.model_text


async def refused(ts: WorkspaceToolset, name: str, **tool_input: Any) -> str:
    outcome = await call(ts, name, **tool_input)
    assert outcome.is_error, f"{name} {tool_input} was not refused: {outcome.model_text}"
    # A command that ran and failed shows its output; anything else says why it failed.
    assert name == "Bash" or outcome.model_text.startswith("Error")
    return outcome.model_text


def test_tools_are_claude_codes(root: Path) -> None:
    specs = {s.client_name: s for s in toolset(root).list_tools()}
    assert list(specs) == [t for t in TOOL_NAMES if t not in ("WebFetch", "WebSearch")]
    read = specs["Read"]
    assert read.name == "workspace__Read" and read.server_name == "workspace"
    assert read.block_type == "mcp_tool_use"
    assert set(read.input_schema["properties"]) == {"file_path", "offset", "limit", "pages"}
    assert specs["Edit"].input_schema["required"] == ["file_path", "old_string", "new_string"]
    assert set(specs["Bash"].input_schema["properties"]) == {
        "command", "timeout", "description", "run_in_background", "dangerouslyDisableSandbox"}
    assert {"-A", "-B", "-C", "-i", "-n", "output_mode", "head_limit", "multiline"} <= set(
        specs["Grep"].input_schema["properties"])
    assert specs["TodoWrite"].input_schema["properties"]["todos"]["items"]["required"] == [
        "content", "status", "activeForm"]
    assert specs["MultiEdit"].input_schema["properties"]["edits"]["minItems"] == 1
    subset = toolset(root, tools=("Read", "Grep")).list_tools()
    assert [s.client_name for s in subset] == ["Read", "Grep"]


async def test_read(root: Path) -> None:
    ts = toolset(root)
    text = await ok(ts, "Read", file_path=str(root / "src" / "app.py"))
    assert text.splitlines()[0] == "     1\timport os"
    assert "     4\t    return 42" in text
    part = await ok(ts, "workspace__Read", file_path="src/app.py", offset=3, limit=1)
    assert part.startswith("     3\tdef main():") and "1 more lines" in part
    (root / "empty.txt").write_text("")
    assert "empty" in await ok(ts, "Read", file_path=str(root / "empty.txt"))
    (root / "bin.dat").write_bytes(b"\x00\x01\x02")
    assert "binary" in await refused(ts, "Read", file_path=str(root / "bin.dat"))
    assert "directory" in await refused(ts, "Read", file_path=str(root / "src"))
    assert "does not exist" in await refused(ts, "Read", file_path=str(root / "nope.txt"))


async def test_write_edit_multiedit(root: Path) -> None:
    ts = toolset(root)
    target = root / "new" / "deep" / "f.txt"
    assert "created" in await ok(ts, "Write", file_path=str(target), content="a\nb\na\n")
    assert target.read_text() == "a\nb\na\n"
    assert "updated" in await ok(ts, "Write", file_path=str(target), content="a\nb\na\nc\n")
    assert "2 matches" in (await refused(ts, "Edit", file_path=str(target), old_string="a",
                                         new_string="z")).replace("Found 2", "2 matches")
    assert "not found" in await refused(ts, "Edit", file_path=str(target), old_string="q",
                                        new_string="z")
    text = await ok(ts, "Edit", file_path=str(target), old_string="b", new_string="B")
    assert "     2\tB" in text
    await ok(ts, "Edit", file_path=str(target), old_string="a", new_string="A",
             replace_all=True)
    assert target.read_text() == "A\nB\nA\nc\n"
    # MultiEdit is all or nothing.
    await refused(ts, "MultiEdit", file_path=str(target), edits=[
        {"old_string": "c", "new_string": "C"}, {"old_string": "missing", "new_string": "x"}])
    assert target.read_text() == "A\nB\nA\nc\n"
    await ok(ts, "MultiEdit", file_path=str(target), edits=[
        {"old_string": "c", "new_string": "C"}, {"old_string": "B", "new_string": "b"}])
    assert target.read_text() == "A\nb\nA\nC\n"
    # An empty old_string creates a file (Claude Code's convention).
    await ok(ts, "Edit", file_path=str(root / "made.txt"), old_string="", new_string="hi")
    assert (root / "made.txt").read_text() == "hi"


async def test_ls_glob_grep(root: Path) -> None:
    ts = toolset(root)
    tree = await ok(ts, "LS", path=str(root))
    assert f"- {root}/" in tree and "  - src/" in tree and "    - app.py" in tree
    assert ".hidden" not in tree
    assert "util.ts" not in await ok(ts, "LS", path=str(root), ignore=["*.ts"])
    os.utime(root / "src" / "util.ts", (1, 1))
    found = (await ok(ts, "Glob", pattern="**/*.{py,ts}")).splitlines()
    assert found == [str(root / "src" / "app.py"), str(root / "src" / "util.ts")]
    assert await ok(ts, "Glob", pattern="*.py") == "No files found"
    assert await ok(ts, "Glob", pattern="*.py", path=str(root / "src")) == str(
        root / "src" / "app.py")
    assert await ok(ts, "Glob", pattern=f"{root}/src/*.ts") == str(root / "src" / "util.ts")

    files = await ok(ts, "Grep", pattern="main", **{"-i": True})
    assert files.splitlines()[0] == "Found 2 files" and ".hidden" not in files
    content = await ok(ts, "Grep", pattern="return", output_mode="content", **{"-B": 1})
    assert content.splitlines() == [f"{root}/src/app.py-3-def main():",
                                    f"{root}/src/app.py:4:    return 42"]
    assert await ok(ts, "Grep", pattern="o", output_mode="count", path="README.md") == (
        "2\n\nFound 2 total occurrences across 1 files.")
    assert "app.py" not in await ok(ts, "Grep", pattern="x", type="ts")
    assert "util.ts" in await ok(ts, "Grep", pattern="x", glob="*.{ts,tsx}")
    assert await ok(ts, "Grep", pattern="def.*\\n.*return", multiline=True,
                    output_mode="count") == (f"{root}/src/app.py:1\n\nFound 1 total "
                                             "occurrences across 1 files.")
    assert "Invalid regular expression" in await refused(ts, "Grep", pattern="(")


async def test_grep_stops_a_runaway_regex(root: Path) -> None:
    (root / "slow.txt").write_text("a" * 40 + "b\n")
    ts = toolset(root, grep_timeout_s=1.0)
    started = asyncio.get_running_loop().time()
    text = await refused(ts, "Grep", pattern="(a+)+$", path="slow.txt")
    assert "longer than 1 s" in text
    assert asyncio.get_running_loop().time() - started < 4


async def test_paths_outside_the_root_are_refused(root: Path, tmp_path_factory: Any) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret")
    (root / "link_dir").symlink_to(outside)
    (root / "link_file").symlink_to(outside / "secret.txt")
    (root / "inner_link").symlink_to(root / "README.md")
    ts = toolset(root)
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("Read", {"file_path": "../outside/secret.txt"}),
        ("Read", {"file_path": str(outside / "secret.txt")}),
        ("Read", {"file_path": str(root / "src" / ".." / ".." / "x")}),
        ("Read", {"file_path": str(root / "link_dir" / "secret.txt")}),
        ("Read", {"file_path": str(root / "link_file")}),
        ("Read", {"file_path": "/etc/passwd"}),
        ("Read", {"file_path": "~/.bashrc"}),
        ("Read", {"file_path": "a\x00b"}),
        ("Write", {"file_path": str(root / "link_dir" / "new.txt"), "content": "x"}),
        ("Write", {"file_path": str(root / "link_file"), "content": "x"}),
        ("Write", {"file_path": "/tmp/escaped-by-test.txt", "content": "x"}),
        ("Edit", {"file_path": str(root / "link_file"), "old_string": "secret",
                  "new_string": "x"}),
        ("MultiEdit", {"file_path": "../outside/secret.txt",
                       "edits": [{"old_string": "s", "new_string": "x"}]}),
        ("LS", {"path": str(outside)}),
        ("LS", {"path": str(root / "link_dir")}),
        ("Glob", {"pattern": "*", "path": "/etc"}),
        ("Glob", {"pattern": "/etc/*"}),
        ("Grep", {"pattern": "secret", "path": str(root / "link_dir")}),
        ("Grep", {"pattern": "root", "path": "/etc/passwd"}),
        ("NotebookRead", {"notebook_path": "../outside/n.ipynb"}),
        ("NotebookEdit", {"notebook_path": str(root / "link_dir" / "n.ipynb"),
                          "new_source": "x", "edit_mode": "insert", "cell_type": "code"}),
    ]
    for name, tool_input in attempts:
        text = await refused(ts, name, **tool_input)
        assert "secret" not in text.replace("secret.txt", "")
    assert (outside / "secret.txt").read_text() == "secret"
    assert not exists(outside / "new.txt") and not exists(Path("/tmp/escaped-by-test.txt"))
    # Links that stay inside the root work; links out are left out of listings and searches.
    assert "Demo" in await ok(ts, "Read", file_path=str(root / "inner_link"))
    assert "link_file" not in await ok(ts, "Glob", pattern="*")
    assert "link_" not in await ok(ts, "LS", path=str(root))
    assert await ok(ts, "Grep", pattern="secret") == "No files found"


def exists(path: Path) -> bool:
    return os.path.lexists(path)


async def test_notebooks(root: Path) -> None:
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]},
        {"id": "calc", "cell_type": "code", "metadata": {}, "execution_count": 1,
         "source": "1 + 1", "outputs": [{"output_type": "execute_result", "metadata": {},
                                         "execution_count": 1,
                                         "data": {"text/plain": ["2"]}}]},
    ]}
    path = root / "n.ipynb"
    path.write_text(json.dumps(notebook))
    ts = toolset(root)
    text = await ok(ts, "NotebookRead", notebook_path=str(path))
    assert '<cell id="intro">' in text and "# Title" in text and "<outputs>\n2\n" in text
    assert "# Title" in await ok(ts, "Read", file_path=str(path))
    assert "1 + 1" in await ok(ts, "NotebookRead", notebook_path=str(path), cell_id="cell-1")
    await ok(ts, "NotebookEdit", notebook_path=str(path), cell_id="calc", new_source="2 + 2")
    await ok(ts, "NotebookEdit", notebook_path=str(path), cell_id="intro", new_source="x = 1",
             edit_mode="insert", cell_type="code")
    await ok(ts, "NotebookEdit", notebook_path=str(path), cell_id="intro", new_source="",
             edit_mode="delete")
    cells = json.loads(path.read_text())["cells"]
    assert [c["source"] for c in cells] == ["x = 1", "2 + 2"]
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert cells[0]["cell_type"] == "code" and cells[0]["id"]
    assert "not found" in await refused(ts, "NotebookEdit", notebook_path=str(path),
                                        cell_id="gone", new_source="x")
    assert "required" in await refused(ts, "NotebookEdit", notebook_path=str(path),
                                       new_source="x", edit_mode="insert")


async def test_todo_write(root: Path) -> None:
    ts = toolset(root)
    todos = [{"content": "Write tests", "status": "in_progress", "activeForm": "Writing"},
             {"content": "Ship", "status": "pending", "activeForm": "Shipping"}]
    assert "1 pending, 1 in progress" in await ok(ts, "TodoWrite", todos=todos)
    assert ts.todos("key_test") == todos and ts.todos("other") == []
    await refused(ts, "TodoWrite", todos=[{"content": "x", "status": "done"}])
    await refused(ts, "Unknown")


async def test_web_tools_are_delegated(root: Path) -> None:
    seen: list[tuple[str, Mapping[str, Any]]] = []

    async def fetch(tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        seen.append(("fetch", tool_input))
        return ToolOutcome({"type": "web_fetch_tool_result"}, "page text",
                           urls=("https://a.example/",))

    async def search(tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        seen.append(("search", tool_input))
        return ToolOutcome({}, "max_uses_exceeded", is_error=True,
                           error_code="max_uses_exceeded")

    ts = toolset(root).with_web(web_fetch=fetch, web_search=search)
    assert {"WebFetch", "WebSearch"} <= {s.client_name for s in ts.list_tools()}
    fetched = await call(ts, "WebFetch", url="https://a.example/", prompt="summarise")
    assert fetched.model_text == "page text" and fetched.urls == ("https://a.example/",)
    failed = await call(ts, "WebSearch", query="gateway")
    assert failed.is_error and failed.error_code == "max_uses_exceeded"
    assert seen == [("fetch", {"url": "https://a.example/", "prompt": "summarise"}),
                    ("search", {"query": "gateway"})]
    assert (await call(toolset(root), "WebFetch", url="https://a.example/",
                       prompt="x")).error_code == "unknown_tool"


async def test_as_an_mcp_backend(root: Path) -> None:
    backend = WorkspaceMcpBackend(toolset(root, tools=("Read", "LS")), CTX)
    listed = await backend.list_tools()
    assert [t.name for t in listed] == ["Read", "LS"]
    assert listed[0].to_json()["input_schema"]["required"] == ["file_path"]
    result = await backend.call_tool("Read", {"file_path": "README.md"})
    assert not result.is_error and "# Demo" in result.texts[0]
    assert (await backend.call_tool("Read", {"file_path": "/etc/passwd"})).is_error


def test_settings(root: Path) -> None:
    from openrouter_anthropic.app import key_id

    workspaces = Workspaces.from_settings({
        "root": str(root), "keys": ["team-key"], "tools": ["Read", "Bash"],
        "bash": {"allow": ["ls", "git"], "network": True, "timeout_s": 5},
        "profiles": {"other": {"root": str(root / "src")}}})
    first, other = workspaces.profiles
    assert first.permits(key_id("team-key")) and first.permits("team-key")
    assert not first.permits(key_id("else"))
    assert first.tools == ("Read", "Bash") and first.bash == BashPolicy(
        allow=("ls", "git"), network=True, timeout_s=5.0)
    assert workspaces.profile_for(key_id("else")) is other  # no keys: every key
    toolset_a = workspaces.toolset_for(key_id("team-key"))
    assert toolset_a is workspaces.toolset_for(key_id("team-key"))  # one per profile
    assert not Workspaces.from_settings({})
    assert Workspaces.from_settings({}).toolset_for("anonymous") is None
    for bad in ({"root": str(root / "missing")}, {"root": str(root), "tools": ["Rm"]},
                {"root": str(root), "bash": {"allow_all": True}}, {"rooot": "x"},
                {"root": str(root), "bash": {"timeout_s": -1}}, {"profiles": ["x"]}):
        with pytest.raises(SettingsError):
            Workspaces.from_settings(bad)


# -------------------------------------------------------------- Bash, in the real sandbox


@pytest.fixture
def shared_root() -> Iterator[Path]:
    require_sandbox()
    with shared_tmpdir("oa-ws-test-") as base:
        root = base / "ws"
        root.mkdir()
        sandbox_owned(root)
        (root / "data.txt").write_text("one\ntwo\n")
        yield root


async def test_bash_runs_allowed_commands_in_the_sandbox(shared_root: Path) -> None:
    ts = toolset(shared_root)
    text = await ok(ts, "Bash", command="cat data.txt | wc -l && pwd && echo made > out.txt")
    assert text.split() == ["2", str(shared_root)]
    assert (shared_root / "out.txt").read_text() == "made\n"
    # Files the gateway writes can be changed by the sandboxed command, and back.
    await ok(ts, "Write", file_path=str(shared_root / "w.txt"), content="x")
    await ok(ts, "Bash", command="echo y >> w.txt")
    await ok(ts, "Edit", file_path=str(shared_root / "out.txt"), old_string="made",
             new_string="edited")
    assert (shared_root / "w.txt").read_text() == "xy\n"
    failing = await refused(ts, "Bash", command="ls no-such-file")
    assert "Exit code 2" in failing and "No such file" in failing


async def test_bash_refusals(shared_root: Path) -> None:
    ts = toolset(shared_root)
    for command in ("curl http://example.com", "echo $(id)", "echo `id`", "sudo ls",
                    "ls; nc -l 80", "bash -c 'id'", "/bin/rm data.txt"):
        assert "not allowed" in await refused(ts, "Bash", command=command), command
    assert (shared_root / "data.txt").exists()
    await ok(ts, "Bash", command="cat <<'EOF' > note.txt\ndon't run: curl\nEOF")
    assert (shared_root / "note.txt").read_text() == "don't run: curl\n"


async def test_bash_network_timeout_and_output_cap(shared_root: Path) -> None:
    hits: list[bytes] = []

    async def canary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(10))
        writer.close()

    server = await asyncio.start_server(canary, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = (f"python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {port}),"
             " timeout=2); s.sendall(b'hi'); print('connected')\"")
    async with server:
        text = await refused(toolset(shared_root), "Bash", command=probe)
        assert "connected" not in text.replace("not connected", "")
        await asyncio.sleep(0.1)
        assert hits == []
        networked = toolset(shared_root, bash=BashPolicy(network=True))
        assert "connected" in await ok(networked, "Bash", command=probe)
        await asyncio.sleep(0.1)
        assert hits == [b"hi"]

    text = await refused(toolset(shared_root), "Bash", timeout=300,
                         command="python3 -c 'import time; time.sleep(20)'")
    assert "timed out after 0.3 s" in text
    capped = toolset(shared_root, bash=BashPolicy(max_output=1000))
    text = await ok(capped, "Bash", command="seq 1 100000")
    assert len(text) < 1100 and "truncated" in text


async def test_bash_is_unavailable_without_bubblewrap(root: Path) -> None:
    ts = WorkspaceToolset(WorkspaceProfile(name="t", root=root),
                          sandbox=Sandbox(bwrap="/nonexistent/bwrap"))
    text = await refused(ts, "Bash", command="ls")
    assert "unavailable" in text and "bubblewrap" in text
