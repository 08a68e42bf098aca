"""Code execution: result shapes checked with the anthropic SDK's own types, containers
reused across requests, the text editor, settings, and the tool loop's provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import (
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    Container,
    TextEditorCodeExecutionToolResultBlock,
)

from openrouter_anthropic.errors import InvalidRequest
from openrouter_anthropic.settings import SettingsError
from openrouter_anthropic.tools.base import ToolContext, ToolOutcome
from openrouter_anthropic.tools.code_execution import (
    CODE_EXECUTION_TYPES,
    CodeExecution,
    CodeExecutionConfig,
    CodeExecutionProvider,
    UnknownToolType,
    code_execution_tools,
)
from openrouter_anthropic.tools.containers import ContainerNotFound, ContainerStore
from openrouter_anthropic.tools.registry import Declaration
from sandbox_support import require_sandbox, shared_tmpdir


@pytest.fixture
def service() -> Iterator[CodeExecution]:
    require_sandbox()
    with shared_tmpdir("oa-ce-test-") as base:
        yield CodeExecution(CodeExecutionConfig(enabled=True, timeout_s=10),
                            containers=ContainerStore(base / "containers"))


def ctx(container_id: str | None = None, key: str = "key_a") -> ToolContext:
    return ToolContext(request_id="req_test", key_id=key, container_id=container_id)


def block(outcome: ToolOutcome) -> dict[str, Any]:
    return {**outcome.result_block, "tool_use_id": "srvtoolu_test"}


async def test_python_tool_result_shape(service: CodeExecution) -> None:
    [tool] = code_execution_tools("code_execution_20250522", service)
    assert tool.spec.name == "code_execution"
    context = ctx()
    outcome = await tool.run({"code": "import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)"
                                      "\nsys.exit(3)"}, context)
    parsed = CodeExecutionToolResultBlock.model_validate(block(outcome))
    assert parsed.content.type == "code_execution_result"
    assert (parsed.content.stdout, parsed.content.stderr) == ("42\n", "warn\n")
    assert parsed.content.return_code == 3 and parsed.content.content == []
    assert not outcome.is_error
    assert "return_code: 3" in outcome.model_text and "42" in outcome.model_text
    Container.model_validate(context.message_fields["container"])
    assert context.message_fields["container"]["id"] == context.container_id


async def test_bash_and_editor_result_shapes(service: CodeExecution) -> None:
    bash_tool, editor_tool = code_execution_tools("code_execution_20250825", service)
    assert (bash_tool.spec.name, editor_tool.spec.name) == (
        "bash_code_execution", "text_editor_code_execution")
    context = ctx()
    parsed = BashCodeExecutionToolResultBlock.model_validate(
        block(await bash_tool.run({"command": "echo out; echo err >&2; exit 2"}, context)))
    assert parsed.content.type == "bash_code_execution_result"
    assert (parsed.content.stdout, parsed.content.stderr, parsed.content.return_code) == (
        "out\n", "err\n", 2)

    async def edit(**tool_input: Any) -> Any:
        outcome = await editor_tool.run(tool_input, context)
        return TextEditorCodeExecutionToolResultBlock.model_validate(block(outcome)).content

    created = await edit(command="create", path="/workspace/notes/a.txt",
                         file_text="one\ntwo\nthree\n")
    assert created.type == "text_editor_code_execution_create_result"
    assert created.is_file_update is False
    assert (await edit(command="create", path="notes/a.txt",
                       file_text="one\ntwo\nthree\n")).is_file_update is True
    view = await edit(command="view", path="notes/a.txt", view_range=[2, -1])
    assert view.type == "text_editor_code_execution_view_result"
    assert (view.content, view.file_type, view.start_line, view.num_lines,
            view.total_lines) == ("two\nthree", "text", 2, 2, 3)
    replaced = await edit(command="str_replace", path="notes/a.txt", old_str="two",
                          new_str="2\n2b")
    assert replaced.type == "text_editor_code_execution_str_replace_result"
    assert (replaced.old_start, replaced.old_lines, replaced.new_start,
            replaced.new_lines) == (2, 1, 2, 2)
    assert replaced.lines == ["-two", "+2", "+2b"]
    # The sandboxed command sees the editor's file, and may change it (same owner).
    parsed = BashCodeExecutionToolResultBlock.model_validate(block(await bash_tool.run(
        {"command": "cat notes/a.txt && echo more >> notes/a.txt && echo ok"}, context)))
    assert parsed.content.stdout == "one\n2\n2b\nthree\nok\n"

    missing = await edit(command="view", path="nope.txt")
    assert missing.type == "text_editor_code_execution_tool_result_error"
    assert missing.error_code == "file_not_found" and missing.error_message
    ambiguous = await edit(command="str_replace", path="notes/a.txt", old_str="2",
                           new_str="x")
    assert ambiguous.error_code == "invalid_tool_input"
    assert "occurs" in (ambiguous.error_message or "")


async def test_container_is_reused_across_requests(service: CodeExecution) -> None:
    first = ctx()
    bash_tool, editor_tool = service.tools("code_execution_20260120")
    await bash_tool.run({"command": "echo persisted > kept.txt"}, first)
    container_id = first.container_id
    assert container_id is not None and container_id.startswith("container_")

    later = ctx(container_id)  # a later request naming the container
    outcome = await bash_tool.run({"command": "cat kept.txt"}, later)
    assert outcome.result_block["content"]["stdout"] == "persisted\n"
    assert later.message_fields["container"]["id"] == container_id
    view = await editor_tool.run({"command": "view", "path": "kept.txt"}, later)
    assert view.result_block["content"]["content"] == "persisted"

    # A new request without a container gets a fresh one; another key never sees it.
    fresh = ctx()
    out = await bash_tool.run({"command": "ls"}, fresh)
    assert fresh.container_id != container_id and out.result_block["content"]["stdout"] == ""
    stranger = ctx(container_id, key="key_b")
    refused = await bash_tool.run({"command": "cat kept.txt"}, stranger)
    assert refused.is_error and refused.error_code == "unavailable"


def test_containers_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = ContainerStore(tmp_path / "c", ttl_s=60, clock=lambda: now[0])
    container = store.create("key_a")
    assert Container.model_validate(container.info()).id == container.id
    now[0] += 30
    assert store.get(container.id, "key_a").expires_at == 1090  # each use extends it
    now[0] += 61
    with pytest.raises(ContainerNotFound):
        store.get(container.id, "key_a")
    assert not (tmp_path / "c" / container.id).exists()
    for bad in ("../../etc", "container_x", "container_" + "a" * 23 + "/"):
        with pytest.raises(ContainerNotFound):
            store.get(bad, "key_a")
    old = store.create("key_a")
    now[0] += 120
    store.create("key_a")  # creating sweeps the expired
    assert not (tmp_path / "c" / old.id).exists()


def test_tools_per_type_and_unknown_types(tmp_path: Path) -> None:
    svc = CodeExecution(CodeExecutionConfig(enabled=True),
                        containers=ContainerStore(tmp_path / "c"))
    for kind in CODE_EXECUTION_TYPES[1:]:
        assert [t.spec.name for t in svc.tools(kind)] == [
            "bash_code_execution", "text_editor_code_execution"]
    with pytest.raises(UnknownToolType, match="code_execution_20990101"):
        svc.tools("code_execution_20990101")


def test_settings() -> None:
    assert CodeExecution.from_settings({}) is None
    assert CodeExecution.from_settings({"code_execution": {"enabled": False}}) is None
    svc = CodeExecution.from_settings({"code_execution": {
        "enabled": True, "timeout_s": "5", "memory_mb": 512, "ro_binds": ["/opt/venv"],
        "requests_per_minute": 10}})
    assert svc is not None
    assert {t.spec.requests_per_minute for t in svc.tools("code_execution_20250825")} == {10}
    assert svc.config.limits.timeout_s == 5 and svc.config.limits.memory_bytes == 512 << 20
    assert svc.sandbox.ro_binds == ("/opt/venv",)
    for bad in ({"timeout": 5}, {"timeout_s": 0}, {"memory_mb": "lots"}, {"enabled": "maybe"}):
        with pytest.raises(SettingsError, match="code_execution"):
            CodeExecutionConfig.from_settings({"code_execution": bad})


async def test_provider_opens_declarations_and_checks_the_container(
        service: CodeExecution) -> None:
    provider = CodeExecutionProvider(service)
    declared = [Declaration("tools.0", {"type": "code_execution_20250825",
                                        "name": "code_execution"})]
    context = ctx()
    toolset = await provider.open(declared, {}, context)
    assert [t.spec.name for t in toolset.tools] == ["bash_code_execution",
                                                    "text_editor_code_execution"]
    await toolset.tools[0].run({"command": "true"}, context)
    container_id = context.container_id
    for container in (container_id, {"id": container_id}):
        again = ctx()
        await provider.open(declared, {"container": container}, again)
        assert again.container_id == container_id
        assert again.message_fields["container"]["id"] == container_id
    with pytest.raises(InvalidRequest, match="container"):
        await provider.open(declared, {"container": "container_" + "x" * 24}, ctx())
    with pytest.raises(InvalidRequest, match="container"):
        await provider.open(declared, {"container": container_id}, ctx(key="key_b"))
    with pytest.raises(InvalidRequest, match="name"):
        await provider.open([Declaration("tools.0", {"type": "code_execution_20250825",
                                                     "name": "python"})], {}, ctx())
    with pytest.raises(InvalidRequest, match="not enabled"):
        await CodeExecutionProvider(None).open(declared, {}, ctx())


def test_provider_replays_result_blocks() -> None:
    provider = CodeExecutionProvider(None)
    text, is_error = provider.replay_text({"type": "bash_code_execution_tool_result",
                                           "content": {"type": "bash_code_execution_result",
                                                       "stdout": "hi", "stderr": "",
                                                       "return_code": 0, "content": []}})
    assert (text, is_error) == ("return_code: 0\nstdout:\nhi", False)
    text, is_error = provider.replay_text({
        "type": "code_execution_tool_result",
        "content": {"type": "code_execution_tool_result_error",
                    "error_code": "execution_time_exceeded"}})
    assert is_error and "execution_time_exceeded" in text
    text, _ = provider.replay_text({
        "type": "text_editor_code_execution_tool_result",
        "content": {"type": "text_editor_code_execution_str_replace_result",
                    "lines": ["-a", "+b"]}})
    assert text == "Edited:\n-a\n+b"
