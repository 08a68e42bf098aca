"""The edge to the official MCP SDK (`mcp` 2.x), shared by the connector and managed servers.

Owns: loading the SDK off the event loop (importing it takes about a second, and requests
without MCP must not pay for it), connecting over streamable HTTP with headers, only to the
addresses the SSRF guard (ssrf.py) checked, telling a rejected token from an unreachable
server, and turning MCP results into what the model and the client see.

Nothing here raises an SDK or HTTP-client exception to its callers: connecting fails with
`McpConnectError` (its `kind` says why), a call fails with `McpCallError` (its `code` is the
tool-metrics error code). Messages never contain the headers' secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ..redact import scrub
from .ssrf import CheckedTarget

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp_types import DiscoverResult

ConnectErrorKind = Literal["auth", "unreachable", "refused", "protocol", "timeout"]


class McpConnectError(Exception):
    """Could not open a session with an MCP server; `kind` says why, the message says what."""

    def __init__(self, kind: ConnectErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class McpCallError(Exception):
    """A tool call did not produce a result; `code` is its tool-metrics error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class McpToolDef:
    """A tool as an MCP server lists it (the shape of Anthropic's `mcp_tool_listing` entries)."""

    name: str
    description: str
    input_schema: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "input_schema": dict(self.input_schema)}


@dataclass(frozen=True, slots=True)
class CallResult:
    is_error: bool
    texts: tuple[str, ...]


# -- loading the SDK ------------------------------------------------------------------

_sdk_lock = threading.Lock()  # not an asyncio lock: several event loops may ask at once
_sdk_loaded = False


async def load_sdk() -> None:
    """Import the MCP SDK in a worker thread, once per process."""
    if not _sdk_loaded:
        await asyncio.to_thread(_import_sdk)


def _import_sdk() -> None:
    global _sdk_loaded
    with _sdk_lock:
        if _sdk_loaded:
            return
        _import_modules()
        _sdk_loaded = True


def _import_modules() -> None:
    import httpcore2  # noqa: F401
    import httpx2  # noqa: F401
    import mcp
    import mcp.client.streamable_http  # noqa: F401


# -- streamable HTTP ------------------------------------------------------------------


def _pinned_transport(pin: CheckedTarget) -> httpx2.AsyncBaseTransport:
    """An HTTP transport that connects only to the addresses the SSRF guard checked for
    `pin.host:pin.port` (TLS still verifies the host name): a second DNS answer cannot
    redirect the session, and no other host can be reached through it."""
    import httpcore2
    import httpx2
    from httpcore2._backends.auto import AutoBackend

    class PinnedBackend(AutoBackend):
        async def connect_tcp(self, host: str, port: int,
                              timeout: float | None = None,  # noqa: ASYNC109 (the base's)
                              local_address: str | None = None,
                              socket_options: Iterable[Any] | None = None,
                              ) -> httpcore2.AsyncNetworkStream:
            if host.lower().strip("[]").rstrip(".") != pin.host or port != pin.port:
                raise httpcore2.ConnectError(f"{host}:{port} is not the checked address")
            error: Exception = httpcore2.ConnectError(f"{host} has no checked address")
            for address in pin.addresses:
                try:
                    return await super().connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
                except httpcore2.ConnectError as exc:
                    error = exc
            raise error

    class PinnedTransport(httpx2.AsyncHTTPTransport):
        def __init__(self) -> None:
            super().__init__()
            self._pool = httpcore2.AsyncConnectionPool(
                ssl_context=httpx2.create_ssl_context(), network_backend=PinnedBackend())

    return PinnedTransport()


@dataclass(slots=True)
class HttpEndpoint:
    """How to reach one streamable-HTTP MCP server. Each operation opens its own session
    (a connection and, after the first, no version probe), so no session outlives the
    `await` that uses it: nothing to close, nothing shared between requests' tasks."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    pin: CheckedTarget | None = None  # from ssrf.check_target; None: trusted (managed)
    connect_timeout: float = 10.0
    timeout: float = 60.0
    _mode: str = "auto"
    _discover: DiscoverResult | None = None

    @property
    def secrets(self) -> list[str]:
        values = list(self.headers.values())
        return values + [v.split(" ", 1)[1] for v in values if " " in v]

    def scrubbed(self, text: str) -> str:
        return scrub(text, self.secrets)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Client]:
        await load_sdk()
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        statuses: list[int] = []

        async def on_response(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        http = httpx2.AsyncClient(
            headers=dict(self.headers),
            timeout=httpx2.Timeout(self.connect_timeout, read=self.timeout),
            transport=_pinned_transport(self.pin) if self.pin is not None else None,
            event_hooks={"response": [on_response]},
        )
        client = Client(streamable_http_client(self.url, http_client=http),
                        mode=self._mode, prior_discover=self._discover,
                        read_timeout_seconds=self.timeout, cache=None)
        async with http:
            try:
                async with asyncio.timeout(self.connect_timeout + self.timeout):
                    await client.__aenter__()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._connect_error(exc, statuses) from None
            try:
                self._remember_version(client)
                yield client
            finally:
                # Closed without the body's exception: it propagates as raised, not wrapped
                # in the SDK's task-group exception groups.
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)

    def _remember_version(self, client: Client) -> None:
        """Later sessions adopt the negotiated version instead of probing for it again."""
        session = client.session
        if session.discover_result is not None:
            self._mode = client.protocol_version
            self._discover = session.discover_result
        elif session.initialize_result is not None:
            self._mode = "legacy"

    def _connect_error(self, exc: BaseException, statuses: list[int]) -> McpConnectError:
        if any(s in (401, 403) for s in statuses):
            return McpConnectError("auth", "the server rejected the authorization token")
        leaves = list(_leaves(exc))
        if any(isinstance(e, TimeoutError | asyncio.CancelledError) for e in leaves):
            return McpConnectError("timeout", "the server did not answer in time")
        names = {type(e).__name__ for e in leaves}
        if names & {"ConnectError", "ConnectTimeout", "ConnectionRefusedError", "OSError"}:
            return McpConnectError("unreachable", "cannot connect to the server")
        detail = self.scrubbed("; ".join(str(e) for e in leaves if str(e))[:300])
        if statuses and statuses[-1] >= 400:
            detail = f"HTTP {statuses[-1]}" + (f": {detail}" if detail else "")
        return McpConnectError("protocol", detail or "the server did not speak MCP")

    async def list_tools(self) -> list[McpToolDef]:
        async with self.session() as client:
            return await list_all_tools(client, self.timeout, self.scrubbed)

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> CallResult:
        try:
            async with self.session() as client:
                return await call_tool(client, name, arguments, self.timeout, self.scrubbed)
        except McpConnectError as exc:
            code = "timeout" if exc.kind == "timeout" else "unavailable"
            raise McpCallError(code, exc.message) from None


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
        return
    yield exc
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        yield from _leaves(cause)


# -- operations on an open session ----------------------------------------------------

_MAX_PAGES = 100


async def list_all_tools(client: Client, limit_s: float,
                         scrubbed: Callable[[str], str] = str) -> list[McpToolDef]:
    """Every tool of the server, following pagination (bounded)."""
    tools: list[McpToolDef] = []
    cursor: str | None = None
    try:
        async with asyncio.timeout(limit_s):
            for _ in range(_MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                tools.extend(McpToolDef(t.name, t.description or "", dict(t.input_schema))
                             for t in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
    except TimeoutError:
        raise McpConnectError("timeout", "the server did not list its tools in time") from None
    except Exception as exc:
        raise McpConnectError("protocol",
                              f"listing tools failed: {scrubbed(str(exc))[:300]}") from None
    return tools


async def call_tool(client: Client, name: str, arguments: Mapping[str, Any], limit_s: float,
                    scrubbed: Callable[[str], str] = str) -> CallResult:
    try:
        async with asyncio.timeout(limit_s):
            result = await client.call_tool(name, dict(arguments))
    except TimeoutError:
        raise McpCallError("timeout", f"the tool did not answer within {limit_s:g} s") from None
    except Exception as exc:
        message = scrubbed(str(exc))[:500] or type(exc).__name__
        raise McpCallError("unavailable", f"the call failed: {message}") from None
    is_error = bool(getattr(result, "is_error", False))
    content = [item.model_dump(mode="json", by_alias=True, exclude_none=True)
               for item in getattr(result, "content", None) or []]
    texts = [_content_text(item) for item in content]
    structured = getattr(result, "structured_content", None)
    if not texts and structured is not None:
        texts = [orjson.dumps(structured).decode()]
    return CallResult(is_error, tuple(t for t in texts if t))


def _content_text(item: Mapping[str, Any]) -> str:
    """MCP content -> text (Anthropic's mcp_tool_result carries text blocks only)."""
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text", ""))
    if kind == "resource":
        resource = item.get("resource") or {}
        if "text" in resource:
            return str(resource["text"])
        return f"[resource {resource.get('uri', '')} ({resource.get('mimeType', 'binary')})]"
    if kind == "resource_link":
        return f"[resource link {item.get('name', '')}: {item.get('uri', '')}]"
    if kind in ("image", "audio"):
        return f"[{kind} ({item.get('mimeType', 'unknown type')}) omitted]"
    return orjson.dumps(item).decode()
