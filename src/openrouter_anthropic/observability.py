"""Structured logs: one JSON line per request, correlated by the `request-id` header."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .gateway import RequestContext
    from .http import Request

access = logging.getLogger("openrouter_anthropic.access")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("openrouter_anthropic")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log_request(request: Request, ctx: RequestContext, status: int, seconds: float) -> None:
    fields: dict[str, Any] = {
        "request_id": request.request_id,
        "method": request.method,
        "path": request.path,
        "status": status,
        "latency_ms": round(seconds * 1000, 2),
    }
    fields["key_id"] = ctx.key_id
    if ctx.requested_model:
        fields["model"] = ctx.requested_model
        fields["upstream_model"] = ctx.upstream_model
    if ctx.first_token_at is not None:
        fields["ttft_ms"] = round((ctx.first_token_at - ctx.started_at) * 1000, 2)
    if ctx.cost is not None:
        fields["cost_usd"] = ctx.cost
    if ctx.stream_error is not None:
        fields["stream_error"] = ctx.stream_error[0]
    if ctx.session_id:
        fields["session_id"] = ctx.session_id
    for header in ("x-claude-code-agent-id", "x-claude-code-parent-agent-id"):
        value = request.headers.get(header)
        if value:
            fields[header[len("x-claude-code-"):].replace("-", "_")] = value[:128]
    if ctx.usage:
        fields["usage"] = ctx.usage
    access.info("request", extra={"fields": fields})
