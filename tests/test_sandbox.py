"""Sandbox escapes, run through code execution in the real bubblewrap sandbox: paths out of
the container, symlinks, the network, a fork bomb, huge output, timeouts, writes to the
system, the user it runs as. Without bubblewrap these tests fail (see sandbox_support)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import (
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    TextEditorCodeExecutionToolResultBlock,
)

from openrouter_anthropic.tools.base import ToolContext, ToolOutcome
from openrouter_anthropic.tools.code_execution import CodeExecution, CodeExecutionConfig
from openrouter_anthropic.tools.containers import ContainerStore
from openrouter_anthropic.tools.sandbox import Limits, Mount, Sandbox
from sandbox_support import require_sandbox, sandbox_owned, shared_tmpdir


@pytest.fixture
def base_dir() -> Iterator[Path]:
    require_sandbox()
    with shared_tmpdir("oa-sbx-test-") as path:
        yield path


def make_service(base: Path, **config: Any) -> CodeExecution:
    settings = CodeExecutionConfig(enabled=True, **config)
    return CodeExecution(settings, containers=ContainerStore(base / "containers"))


@pytest.fixture
def service(base_dir: Path) -> CodeExecution:
    return make_service(base_dir, timeout_s=10)


def ctx(container_id: str | None = None) -> ToolContext:
    return ToolContext(request_id="req_test", key_id="key_test", container_id=container_id)


async def python(svc: CodeExecution, code: str, context: ToolContext | None = None
                 ) -> ToolOutcome:
    outcome = await svc.run_python({"code": code}, context or ctx())
    CodeExecutionToolResultBlock.model_validate({**outcome.result_block, "tool_use_id": "t"})
    return outcome


async def bash(svc: CodeExecution, command: str, context: ToolContext | None = None
               ) -> ToolOutcome:
    outcome = await svc.run_bash({"command": command}, context or ctx())
    BashCodeExecutionToolResultBlock.model_validate({**outcome.result_block, "tool_use_id": "t"})
    return outcome


async def editor(svc: CodeExecution, context: ToolContext, **tool_input: Any) -> ToolOutcome:
    outcome = await svc.run_editor(tool_input, context)
    TextEditorCodeExecutionToolResultBlock.model_validate(
        {**outcome.result_block, "tool_use_id": "t"})
    return outcome


def result(outcome: ToolOutcome) -> dict[str, Any]:
    content = outcome.result_block["content"]
    assert not outcome.is_error, content
    assert isinstance(content, dict)
    return content


def error_code(outcome: ToolOutcome) -> str:
    assert outcome.is_error
    return str(outcome.result_block["content"]["error_code"])


async def test_runs_as_uid_65534_in_its_own_namespaces(service: CodeExecution) -> None:
    context = ctx()
    out = result(await python(service, "import os\nprint(os.getuid(), os.getgid(), "
                              "os.getpid(), os.getcwd())\nopen('mine.txt', 'w').write('x')",
                              context))
    uid, gid, pid, cwd = out["stdout"].split()
    assert (uid, gid, cwd) == ("65534", "65534", "/workspace")
    assert int(pid) < 10  # a pid namespace of its own
    assert out["return_code"] == 0
    assert context.container_id is not None
    host_file = service.containers.get(context.container_id, "key_test").files / "mine.txt"
    # On the host too the file belongs to 65534 (or to us when the tests run unprivileged).
    assert host_file.stat().st_uid == (65534 if os.geteuid() == 0 else os.geteuid())


async def test_no_network_and_a_loopback_canary_sees_nothing(service: CodeExecution) -> None:
    hits: list[bytes] = []

    async def canary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(canary, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = (f"import socket\n"
            f"for host in ('127.0.0.1', 'localhost', '10.0.0.1', '1.1.1.1'):\n"
            f"    try:\n"
            f"        s = socket.create_connection((host, {port}), timeout=2)\n"
            f"        s.sendall(b'escaped'); print('CONNECTED', host)\n"
            f"    except OSError as exc:\n"
            f"        print('blocked', host, type(exc).__name__)\n"
            f"import os; print(sorted(os.listdir('/sys/class/net')) "
            f"if os.path.exists('/sys/class/net') else 'no-sys')")
    async with server:
        out = result(await python(service, code))
        await asyncio.sleep(0.2)
    assert "CONNECTED" not in out["stdout"], out
    assert out["stdout"].count("blocked") == 4
    assert hits == []


async def test_fork_bomb_is_bounded_and_the_host_survives(base_dir: Path) -> None:
    svc = make_service(base_dir, timeout_s=3, max_processes=64)
    started = time.monotonic()
    outcome = await bash(svc, ":(){ :|:& };:; wait")
    assert time.monotonic() - started < 8
    if outcome.is_error:
        assert error_code(outcome) == "execution_time_exceeded"
    # Nothing of it is left running, and the host still forks.
    assert await no_sandbox_processes()
    assert host_runs("true") == ""
    out = result(await python(svc, "import os\nn = 0\ntry:\n    while True:\n"
                              "        if os.fork() == 0:\n            import time\n"
                              "            time.sleep(1)\n            os._exit(0)\n"
                              "        n += 1\nexcept OSError as e:\n"
                              "    print('stopped after', n, e.errno)"))
    assert "stopped after" in out["stdout"]
    assert int(out["stdout"].split()[2]) < 64
    assert await no_sandbox_processes()


async def no_sandbox_processes() -> bool:
    """No process (zombies aside, init reaps those) runs as the sandbox user."""
    if os.geteuid() != 0:
        return True  # unprivileged, the sandbox runs as our own user: nothing to tell apart
    for _ in range(20):
        if all(state.startswith("Z") for state in host_runs("ps -u 65534 -o stat=").split()):
            return True
        await asyncio.sleep(0.1)
    return False


def host_has(path: str) -> bool:
    return os.path.lexists(path)


def host_runs(command: str) -> str:
    return subprocess.run(command.split(), capture_output=True, text=True).stdout


async def test_huge_output_is_capped(base_dir: Path) -> None:
    svc = make_service(base_dir, max_output_bytes=10_000)
    out = result(await python(svc, "import sys\nsys.stdout.write('x' * 5_000_000)\n"
                              "sys.stderr.write('e' * 3_000_000)"))
    assert out["stdout"].startswith("x" * 10_000)
    assert len(out["stdout"]) < 10_200 and "[output truncated: 4990000 more bytes" in out["stdout"]
    assert len(out["stderr"]) < 10_200 and "truncated" in out["stderr"]
    assert out["return_code"] == 0


async def test_timeout_is_execution_time_exceeded(base_dir: Path) -> None:
    svc = make_service(base_dir, timeout_s=1)
    started = time.monotonic()
    outcome = await python(svc, "import time\nprint('start', flush=True)\ntime.sleep(60)")
    assert time.monotonic() - started < 5
    assert error_code(outcome) == "execution_time_exceeded"
    assert "execution_time_exceeded" in outcome.model_text
    outcome = await bash(svc, "sleep 60 & wait")
    assert error_code(outcome) == "execution_time_exceeded"


async def test_the_system_is_read_only_and_private_files_are_absent(
        service: CodeExecution) -> None:
    code = ("import os\n"
            "for path in ('/usr/evil', '/etc/evil', '/evil', '/bin/evil', '/proc/evil'):\n"
            "    try:\n"
            "        open(path, 'w').write('x'); print('WROTE', path)\n"
            "    except OSError as exc:\n"
            "        print('refused', path, exc.errno)\n"
            "for path in ('/root', '/home', '/work', '/etc/shadow', '/etc/hostname', "
            "'/var', '/opt'):\n"
            "    print('exists' if os.path.exists(path) else 'absent', path)\n")
    out = result(await python(service, code))["stdout"]
    assert "WROTE" not in out and out.count("refused") == 5
    for path in ("/root", "/home", "/work", "/etc/shadow", "/etc/hostname", "/var", "/opt"):
        assert f"absent {path}" in out
    assert not host_has("/usr/evil")


async def test_memory_and_file_size_limits(base_dir: Path) -> None:
    svc = make_service(base_dir, memory_mb=256, max_file_mb=1)
    out = result(await python(svc, "try:\n    b = bytearray(1024 * 1024 * 1024)\n"
                              "except MemoryError:\n    print('MemoryError')"))
    assert out["stdout"].strip() == "MemoryError"
    out = result(await bash(svc, "head -c 5000000 /dev/zero > big; echo rc=$?; "
                            "stat -c %s big"))
    assert out["stdout"].split()[-1] == str(1 << 20)


async def test_editor_paths_cannot_leave_the_container(service: CodeExecution) -> None:
    context = ctx()
    assert not (await bash(service, "ln -s / rootlink; ln -s /etc/passwd pw; mkdir d; "
                           "ln -s .. d/up", context)).is_error
    attempts = [
        {"command": "view", "path": "../../../../etc/passwd"},
        {"command": "view", "path": "/etc/passwd"},
        {"command": "view", "path": "/workspace/../etc/passwd"},
        {"command": "view", "path": "rootlink/etc/passwd"},
        {"command": "view", "path": "pw"},
        {"command": "view", "path": "d/up/../meta.json"},
        {"command": "create", "path": "rootlink/tmp/escaped.txt", "file_text": "x"},
        {"command": "create", "path": "/tmp/escaped.txt", "file_text": "x"},
        {"command": "str_replace", "path": "pw", "old_str": "root", "new_str": "toor"},
    ]
    for attempt in attempts:
        outcome = await editor(service, context, **attempt)
        # `d/up/..` is read by name (d/meta.json, absent): never the container's metadata.
        assert error_code(outcome) in ("invalid_tool_input", "file_not_found"), attempt
        assert "root:" not in outcome.model_text and "owner" not in outcome.model_text
    assert not host_has("/tmp/escaped.txt")
    # The container's own metadata sits next to its files, out of reach of the code too.
    out = result(await bash(service, "cat ../meta.json; ls -a /workspace/..", context))
    assert "owner" not in out["stdout"]


async def test_unavailable_when_bubblewrap_is_missing(tmp_path: Path) -> None:
    svc = CodeExecution(CodeExecutionConfig(enabled=True, bwrap="/nonexistent/bwrap"),
                        containers=ContainerStore(tmp_path / "containers"))
    assert "not installed" in (await svc.sandbox.check() or "")
    context = ctx()
    for outcome in (await python(svc, "print(1)", context), await bash(svc, "echo", context),
                    await editor(svc, context, command="view", path="x")):
        assert error_code(outcome) == "unavailable"
        assert not outcome.counted
    assert context.container_id is None and "container" not in context.message_fields
    assert not (tmp_path / "containers").exists()


async def test_a_cancelled_call_leaves_no_process(base_dir: Path) -> None:
    svc = make_service(base_dir, timeout_s=30)
    task = asyncio.create_task(bash(svc, "sleep 30 & sleep 31"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await no_sandbox_processes()
    assert host_runs("pgrep -f sleep.3[01]").strip() == ""


async def test_sandbox_runs_with_a_custom_mount() -> None:
    require_sandbox()
    with shared_tmpdir("oa-sbx-mount-") as host:
        sandbox_owned(host)
        run = await Sandbox().run(["sh", "-c", "pwd; echo hi > f; id -un"],
                                  mount=Mount(host, "/data"), limits=Limits())
        assert run.stdout.split() == ["/data", "sandbox"]
        assert (host / "f").read_text() == "hi\n"
