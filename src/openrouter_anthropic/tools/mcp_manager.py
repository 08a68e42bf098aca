"""Managed MCP servers: `mcp.servers.<name>` of the config file (mcp_config.py), run by
the gateway.

Each server has one supervisor task: start (a stdio server in its own process group, its
stderr logged line by line), open one MCP session and list the tools, then check health
every `health_interval_s` (a `ping`, or a `server/discover` probe on 2026-era servers). A
process that exits, two failed checks in a row, or an admin restart ends the session; the
supervisor stops the process group (SIGTERM, SIGKILL after the grace period) and starts
again after a backoff of 1 s doubling to 60 s, with jitter (an admin restart skips the
wait). Nothing here blocks start-up: `start()` only creates the tasks.

Request tasks use the supervisor's session concurrently (JSON-RPC multiplexes by id); the
session is only entered and exited by its supervisor task.

The gateway's own environment is not passed to stdio servers (it holds the upstream key):
they get PATH, HOME, locale and the like, plus their `env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..errors import GatewayError
from ..metrics import Registry
from ..redact import make_scrubber
from ..settings import Settings
from .mcp_config import ServerConfig, parse_servers
from .mcp_plan import McpBackend
from .mcp_session import (
    CallResult,
    HttpEndpoint,
    McpCallError,
    McpConnectError,
    McpToolDef,
    call_tool,
    list_all_tools,
    load_sdk,
)

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client._transport import TransportStreams

log = logging.getLogger("openrouter_anthropic.mcp")

Status = Literal["starting", "healthy", "unhealthy", "backoff", "stopped"]
_SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "LC_CTYPE",
             "TMPDIR", "TZ", "SYSTEMROOT")
_STDOUT_LIMIT = 64 * 1024 * 1024  # one JSON-RPC message per line; tool listings can be big
_STDERR_LINE_MAX = 2000


# -- one managed server ---------------------------------------------------------------


class ManagedServer:
    """One supervised server: its state for the admin API and its session for requests."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.name = config.name
        self.status: Status = "stopped"
        self.pid: int | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.healthy_since: float | None = None
        self.tools: list[McpToolDef] | None = None
        self._scrub = make_scrubber(config.secrets)
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._restart = asyncio.Event()
        self._listed = asyncio.Event()
        self._stopping = False

    # -- for requests (the McpBackend protocol) --------------------------------------

    async def list_tools(self) -> list[McpToolDef]:
        if self.tools is None:
            raise McpConnectError("unreachable", f"the server is {self.status}")
        return list(self.tools)

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> CallResult:
        client = self._client
        if client is None:
            raise McpCallError("unavailable", f"the server is {self.status}")
        return await call_tool(client, name, arguments, self.config.call_timeout_s, self._scrub)

    async def wait_listed(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._listed.wait()
        return self.tools is not None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self.status = "starting"
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-server-{self.name}")

    def restart(self) -> None:
        """End the current session now and start again without waiting out a backoff."""
        if self._task is None or self._task.done():
            self.start()
        else:
            self._restart.set()

    async def stop(self) -> None:
        self._stopping = True
        self._restart.set()
        task = self._task
        if task is not None and not task.done():
            if self.status not in ("healthy", "unhealthy"):
                # Starting (a session not yet open) or backing off: nothing to finish; the
                # supervisor's cleanup still stops the process group.
                task.cancel()
            bound = self.config.shutdown_grace_s + 5.0
            await asyncio.wait({task}, timeout=bound)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=bound)
        self.status = "stopped"
        self.pid = None

    def info(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {
            "name": self.name,
            "transport": self.config.transport,
            "status": self.status,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "tools": len(self.tools) if self.tools is not None else None,
            "uptime_s": round(now - self.healthy_since, 1) if self.healthy_since else None,
            "keys": "all" if self.config.keys is None else len(self.config.keys),
        }
        if self.config.transport == "stdio":
            out["command"] = [self.config.command, *self.config.args]
        else:
            out["url"] = self._scrub(self.config.url)
        return out

    async def _supervise(self) -> None:
        failures = 0
        try:
            await load_sdk()
            while not self._stopping:
                self.status = "starting"
                self.started_at, self.healthy_since = time.time(), None
                self._restart.clear()
                try:
                    await self._run_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = self._describe(exc)
                    log.warning("MCP server %s failed: %s", self.name, self.last_error)
                finally:
                    self._client = None
                    self.pid = None
                if self._stopping:
                    break
                asked = self._restart.is_set()
                stable = self.healthy_since is not None and \
                    time.time() - self.healthy_since >= self.config.stable_after_s
                failures = 0 if stable else failures
                if not asked:
                    failures += 1
                    await self._backoff(failures)
                if self._stopping:
                    break
                self.restarts += 1
        finally:
            self.status, self.healthy_since = "stopped", None
            self._client = None

    async def _backoff(self, failures: int) -> None:
        self.status = "backoff"
        self.healthy_since = None
        base = min(self.config.backoff_max_s,
                   self.config.backoff_initial_s * 2 ** (failures - 1))
        delay = min(self.config.backoff_max_s, base * random.uniform(0.8, 1.2))
        self._restart.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._restart.wait()

    async def _run_once(self) -> None:
        if self.config.transport == "stdio":
            await self._run_stdio()
        else:
            await self._run_http()

    async def _run_http(self) -> None:
        endpoint = HttpEndpoint(self.config.url, self.config.headers,
                                connect_timeout=self.config.startup_timeout_s,
                                timeout=self.config.call_timeout_s)
        async with endpoint.session() as client:
            await self._serve(client, None)

    async def _run_stdio(self) -> None:
        config = self.config
        env = {k: os.environ[k] for k in _SAFE_ENV if k in os.environ} | dict(config.env)
        try:
            process = await asyncio.create_subprocess_exec(
                config.command, *config.args, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                cwd=config.cwd, start_new_session=True, limit=_STDOUT_LIMIT)
        except OSError as exc:
            raise McpConnectError("unreachable", f"cannot start {config.command!r}: "
                                                 f"{exc.strerror or exc}") from None
        self.pid = process.pid
        log.info("MCP server %s started (pid %d)", self.name, process.pid)
        assert process.stderr is not None
        stderr = asyncio.create_task(self._log_stderr(process.stderr))
        try:
            from mcp import Client

            transport = _process_transport(process)
            client = Client(transport, read_timeout_seconds=config.call_timeout_s, cache=None)
            async with asyncio.timeout(config.startup_timeout_s):
                await client.__aenter__()
            try:
                await self._serve(client, process)
            finally:
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)
        finally:
            await _stop_process_group(process, config.shutdown_grace_s)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(stderr, 1.0)

    async def _serve(self, client: Client, process: asyncio.subprocess.Process | None) -> None:
        """List the tools, then check health until the session must end."""
        self.tools = await list_all_tools(client, self.config.startup_timeout_s, self._scrub)
        self._client = client
        self.status, self.healthy_since = "healthy", time.time()
        self._listed.set()
        log.info("MCP server %s is healthy (%d tools)", self.name, len(self.tools))
        missed = 0
        exited = asyncio.ensure_future(_exit_code(process)) if process is not None else None
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            while True:
                waiting = {restart} | ({exited} if exited is not None else set())
                await asyncio.wait(waiting, timeout=self.config.health_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                if exited is not None and exited.done():
                    self.last_error = f"process exited with code {exited.result()}"
                    log.warning("MCP server %s %s", self.name, self.last_error)
                    return
                if restart.done():
                    return
                try:
                    await _check_health(client, min(self.config.health_interval_s, 10.0))
                except Exception as exc:
                    missed += 1
                    self.status = "unhealthy"
                    self.last_error = f"health check failed: {self._describe(exc)}"
                    if missed >= 2:
                        return
                else:
                    if missed:
                        self.status, self.healthy_since = "healthy", time.time()
                    missed = 0
        finally:
            self._client = None
            for waiter in (exited, restart):
                if waiter is not None:
                    waiter.cancel()

    async def _log_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: skip it
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()[:_STDERR_LINE_MAX]
            if text:
                log.info("MCP server %s stderr: %s", self.name, self._scrub(text))

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, McpConnectError | McpCallError):
            return exc.message
        if isinstance(exc, TimeoutError):
            return "timed out"
        return self._scrub(str(exc) or type(exc).__name__)[:500]


async def _exit_code(process: asyncio.subprocess.Process) -> int:
    """The process's exit code once it exited. Not `process.wait()`: on Python 3.11 that also
    waits for its pipes to close, which a grandchild holding them can delay forever."""
    while process.returncode is None:  # noqa: ASYNC110 (no event says it, see above)
        await asyncio.sleep(0.1)
    return process.returncode


async def _check_health(client: Client, seconds: float) -> None:
    """`ping` on handshake-era sessions; 2026-era MCP removed it: probe `server/discover`."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    async with asyncio.timeout(seconds):
        version = client.protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            await client.session.send_discover(version)
        else:
            await client.send_ping()


async def _stop_process_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """Close stdin (MCP's shutdown), then SIGTERM the group, then SIGKILL after `grace`."""
    if process.stdin is not None:
        with contextlib.suppress(Exception):
            process.stdin.close()
    if process.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), min(1.0, grace))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(process.pid):
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.05)
        else:
            await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 2.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.asynccontextmanager
async def _process_transport(
    process: asyncio.subprocess.Process,
) -> AsyncIterator[TransportStreams]:
    """The MCP stdio framing (one JSON-RPC message per line) over a process we spawned
    ourselves: the SDK's stdio_client spawns its own and exposes neither pid nor stderr."""
    import anyio
    import mcp_types
    from mcp.shared.message import SessionMessage

    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def pump_stdout() -> None:
        async with read_writer:
            while True:
                try:
                    line = await stdout.readline()
                except (ValueError, OSError):
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError as exc:
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def pump_stdin() -> None:
        async with write_reader:
            async for item in write_reader:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    stdin.write(data.encode() + b"\n")
                    await stdin.drain()
                except (ConnectionError, OSError):
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(pump_stdout)
        group.start_soon(pump_stdin)
        try:
            yield read_stream, write_stream
        finally:
            group.cancel_scope.cancel()
            for stream in (read_stream, write_stream):
                await stream.aclose()


# -- the manager ----------------------------------------------------------------------


class McpManager:
    """Every managed server: started at boot, stopped at shutdown, looked up by requests."""

    def __init__(self, configs: Mapping[str, ServerConfig]) -> None:
        self.servers = {name: ManagedServer(c) for name, c in configs.items() if c.enabled}

    @classmethod
    def from_settings(cls, settings: Settings) -> McpManager | None:
        """The manager for `settings.mcp.servers`, or None when none is configured."""
        configs = parse_servers(settings.mcp, getattr(settings, "config_dir", "") or "")
        return cls(configs) if configs else None

    def start(self) -> None:
        """Start every server's supervisor; returns at once (start-up does not wait)."""
        for server in self.servers.values():
            server.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers.values()))

    def get(self, name: str) -> ManagedServer | None:
        return self.servers.get(name)

    def info(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.servers.values()]

    # -- the connector's ManagedServers protocol -------------------------------------

    def permits(self, name: str, key_id: str) -> bool:
        server = self.servers.get(name)
        return server is not None and server.config.allows(key_id)

    def attached_for(self, key_id: str) -> list[str]:
        return [name for name, s in self.servers.items()
                if s.config.allows(key_id) and (
                    s.config.attach is True
                    or (isinstance(s.config.attach, frozenset) and key_id in s.config.attach))]

    def attached_key_ids(self) -> frozenset[str]:
        """Every key id some server is attached to ("*": every key), computed once at
        start-up so the plain path's check is a set lookup (registry.claims)."""
        ids: set[str] = set()
        for s in self.servers.values():
            attach, keys = s.config.attach, s.config.keys
            if attach is True:
                ids |= {"*"} if keys is None else keys
            elif isinstance(attach, frozenset):
                ids |= attach if keys is None else attach & keys
        return frozenset(ids)

    async def backend_for(self, name: str) -> McpBackend:
        server = self.servers.get(name)
        if server is None:
            raise GatewayError(f"MCP server '{name}' is not defined", status=400)
        if not await server.wait_listed(server.config.request_wait_s):
            detail = f"; last error: {server.last_error}" if server.last_error else ""
            raise GatewayError(f"MCP server '{name}' is not ready (status {server.status}"
                               f"{detail})", status=529, error_type="overloaded_error")
        return server

    # -- metrics ----------------------------------------------------------------------

    def register_metrics(self, registry: Registry) -> None:
        up = registry.gauge("ora_mcp_server_up",
                            "1 when a managed MCP server is healthy, else 0.", ("server",))
        restarts = registry.gauge("ora_mcp_server_restarts",
                                  "Restarts of a managed MCP server since the gateway "
                                  "started.", ("server",))

        def collect() -> None:
            for name, server in self.servers.items():
                up.set(1.0 if server.status == "healthy" else 0.0, (name,))
                restarts.set(float(server.restarts), (name,))

        registry.on_collect(collect)
