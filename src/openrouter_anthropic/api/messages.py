"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio

from ..gateway import Gateway, RequestContext
from ..http import Request, Response, json_response

_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_MAX_SESSION_ID = 256


def session_id(request: Request) -> str | None:
    """Claude Code's session id, forwarded to OpenRouter for sticky provider routing."""
    value = request.headers.get("x-claude-code-session-id")
    if not value or len(value) > _MAX_SESSION_ID or not value.isprintable():
        return None
    return value


async def create_message(gateway: Gateway, request: Request, ctx: RequestContext) -> Response:
    body = await request.json(gateway.settings.max_body_bytes)
    ctx.body_size = len(request.body)
    ctx.session_id = session_id(request)
    ctx.anthropic_beta = request.headers.get("anthropic-beta") or ""
    if body.get("stream") is True:
        stream = await gateway.open_stream(body, ctx)
        return Response(200, headers=dict(_STREAM_HEADERS), content_type="text/event-stream",
                        stream=stream)
    return json_response(await gateway.messages(body, ctx))


async def count_tokens(gateway: Gateway, request: Request, ctx: RequestContext) -> Response:
    body = await request.json(gateway.settings.max_body_bytes)
    # Tokenizing a large conversation takes tens of ms: keep it off the event loop.
    count = await asyncio.to_thread(gateway.count_tokens, body, ctx)
    return json_response({"input_tokens": count})
