"""/v1/messages/batches: create, list, retrieve, cancel, delete, results (JSONL).

A batch belongs to the client key that created it (its key id): other keys get 404, as
for a batch that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..batches.service import BatchService
from ..batches.wire import deleted, message_batch
from ..errors import GatewayError, InvalidRequest, NotFound
from ..gateway import RequestContext
from ..http import Request, Response, json_response, page_limit

PREFIX = "/v1/messages/batches"
_PARSE_INLINE = 256 * 1024  # bytes: smaller bodies parse faster than a thread hop
_RESULTS_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def dispatch(service: BatchService, public_base_url: str, request: Request,
                   ctx: RequestContext, path: str) -> Response:
    method = request.method
    owner = ctx.key_id
    rest = path[len(PREFIX):].strip("/")
    parts = rest.split("/") if rest else []
    base = public_base_url.rstrip("/") or _base_url(request)
    if not parts:
        if method == "POST":
            row = await service.create(owner, await _json_body(request, service))
            return json_response(message_batch(row, base))
        if method == "GET":
            return await _list(service, request, owner, base)
        raise _not_allowed(method, path)
    batch_id = parts[0]
    route = (method, parts[1] if len(parts) == 2 else None if len(parts) == 1 else "?")
    if route == ("GET", None):
        return json_response(message_batch(await service.get(owner, batch_id), base))
    if route == ("DELETE", None):
        await service.delete(owner, batch_id)
        return json_response(deleted(batch_id))
    if route == ("POST", "cancel"):
        return json_response(message_batch(await service.cancel(owner, batch_id), base))
    if route == ("GET", "results"):
        lines = await service.results(owner, batch_id)
        return Response(200, headers=dict(_RESULTS_HEADERS),
                        content_type="application/binary", stream=lines)
    # Any other method or path under a batch is no route at all, as Anthropic answers it.
    raise NotFound(f"not found: {method} {request.path}")


async def _json_body(request: Request, service: BatchService) -> dict[str, Any]:
    """The create body, parsed off the event loop: a batch may be hundreds of MB, and
    /v1/messages calls must not wait for it."""
    raw = await request.read_body(service.config.max_body_bytes)
    if not raw.strip():
        raise InvalidRequest("request body: expected a JSON object, got an empty body")
    try:
        value = (orjson.loads(raw) if len(raw) < _PARSE_INLINE
                 else await asyncio.to_thread(orjson.loads, raw))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("request body: expected a JSON object")
    return value


async def _list(service: BatchService, request: Request, owner: str, base: str) -> Response:
    limit = page_limit(request)
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("after_id and before_id cannot be used together")
    rows, has_more = await service.list_batches(owner, limit, after, before)
    data = [message_batch(row, base) for row in rows]
    return json_response({
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    })


def _base_url(request: Request) -> str:
    """This gateway as the client reached it (set public_base_url behind a proxy)."""
    host = request.headers.get("host") or "127.0.0.1"
    proto = request.headers.get("x-forwarded-proto", "http").split(",")[0].strip()
    return f"{proto if proto in ('http', 'https') else 'http'}://{host}"


def _not_allowed(method: str, path: str) -> GatewayError:
    return GatewayError(f"method {method} is not allowed on {path}", status=405,
                        error_type="invalid_request_error")
