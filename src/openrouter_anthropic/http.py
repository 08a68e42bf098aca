"""A minimal ASGI request/response layer: exactly what the API needs, nothing per-request
that it does not. (A full framework's routing, request objects and middleware stack cost
measurable time on every call; see bench/.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .errors import InvalidRequest, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    receive: Receive
    request_id: str
    path_params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    client_key: str | None = None
    # Called once the body is read: from then on receive() only reports a disconnect.
    after_body: Callable[[], None] | None = None

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, request_id: str) -> Request:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"))) if raw_query else {}
        return cls(scope["method"], scope["path"], headers, query, receive, request_id)

    async def read_body(self, limit: int) -> bytes:
        """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(_too_large(limit))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError("client disconnected")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(_too_large(limit))
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.after_body is not None:
            self.after_body()
        return self.body

    async def json(self, limit: int) -> dict[str, Any]:
        raw = await self.read_body(limit)
        if not raw.strip():
            raise InvalidRequest("request body: expected a JSON object, got an empty body")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidRequest("request body: expected a JSON object")
        return value


def page_limit(request: Request, default: int = 20, maximum: int = 1000) -> int:
    """The `limit` query parameter of Anthropic's list endpoints (models, batches)."""
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= limit <= maximum:
        raise InvalidRequest(f"limit: Input should be between 1 and {maximum}")
    return limit


def _too_large(limit: int) -> str:
    size = f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return f"request body is larger than the limit of {size}"


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, orjson.dumps(data), dict(headers or {}))


async def send_response(send: Send, response: Response, request_id: str) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"request-id", request_id.encode()),
    ]
    if response.stream is None:
        headers.append((b"content-length", str(len(response.body)).encode()))
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.items())
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if response.stream is None:
        await send({"type": "http.response.body", "body": response.body})
        return
    stream = response.stream
    try:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        # Runs the stream's cleanup (closing the upstream) now, not at garbage collection.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    await send({"type": "http.response.body", "body": b""})


Handler = Callable[[Request], Awaitable[Response]]
