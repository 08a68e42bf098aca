"""The one error tree of the gateway and the one place upstream errors are mapped.

Every error a client sees is Anthropic-shaped:
``{"type":"error","error":{"type","message"},"request_id"}`` with the status/type pairs of
Anthropic's API. Upstream (OpenRouter) errors are translated by :func:`from_upstream`.
"""

from __future__ import annotations

import re
from typing import Any

# Anthropic status -> error.type. 413 uses Anthropic's own ``request_too_large``.
ERROR_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "not_supported",
    504: "timeout_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error answered to the client with an Anthropic error body."""

    status: int = 500
    error_type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
            self.error_type = error_type or ERROR_TYPE_BY_STATUS.get(status, "api_error")
        if error_type is not None:
            self.error_type = error_type
        self.headers: dict[str, str] = dict(headers or {})
        self.details = details

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.error_type, self.message, request_id, self.details)

    def response_headers(self) -> dict[str, str]:
        """Headers that tell SDKs and Claude Code whether to retry."""
        headers = dict(self.headers)
        if self.status in (400, 401, 402, 403, 404, 413, 501):
            headers.setdefault("x-should-retry", "false")
        return headers


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"


class RequestTooLarge(GatewayError):
    status = 413
    error_type = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"


class NotSupported(GatewayError):
    status = 501
    error_type = "not_supported"


class UpstreamError(GatewayError):
    """The upstream answered with an error, or could not be reached."""

    retryable: bool = False


def error_body(
    error_type: str, message: str, request_id: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if details:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": request_id}


# OpenRouter status -> (Anthropic status, error.type). 503 means "no provider available":
# Claude Code retries 529 overloaded_error but gives up on 503 + x-should-retry:false.
_UPSTREAM_STATUS_MAP: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    502: (529, "overloaded_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
    524: (504, "timeout_error"),
    529: (529, "overloaded_error"),
}

_RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 524, 529})

# Mid-stream OpenRouter error codes/types -> Anthropic error.type.
_STREAM_ERROR_TYPES: dict[str, str] = {
    "rate_limit_exceeded": "rate_limit_error",
    "capacity_exhausted": "rate_limit_error",
    "provider_overloaded": "overloaded_error",
    "provider_unavailable": "overloaded_error",
    "timeout": "timeout_error",
    "context_length_exceeded": "invalid_request_error",
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "payment_required": "billing_error",
    "permission_denied": "permission_error",
}

_CONTEXT_PATTERNS = (
    re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum", re.I),
    # OpenAI / OpenRouter wording: "maximum context length is M tokens ... requested about N"
    re.compile(
        r"maximum context length is (?P<max>\d+).*?(?:requested|resulted in)\D*(?P<n>\d+)",
        re.I | re.S,
    ),
)


def context_overflow_message(message: str) -> str | None:
    """Rewrite a context-length error into the wording Claude Code acts on.

    Claude Code starts compaction when it sees ``prompt is too long: N tokens > M maximum``.
    """
    first = _CONTEXT_PATTERNS[0].search(message)
    if first:
        return first.group(0)
    match = _CONTEXT_PATTERNS[1].search(message)
    if match:
        return f"prompt is too long: {match.group('n')} tokens > {match.group('max')} maximum"
    lowered = message.lower()
    if "context length" in lowered or "context window" in lowered or "too many tokens" in lowered:
        return f"prompt is too long: {message}"
    return None


def _upstream_message(payload: Any, fallback: str) -> tuple[str, str | None, dict[str, Any]]:
    """Pull (message, code/error_type, metadata) out of an OpenRouter error body."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message")
            metadata = error.get("metadata")
            meta = metadata if isinstance(metadata, dict) else {}
            code = error.get("error_type") or meta.get("error_type") or error.get("code")
            raw = meta.get("raw")
            text = message if isinstance(message, str) and message else fallback
            if isinstance(raw, str) and raw and raw not in text:
                text = f"{text}: {raw[:500]}"
            return text, code if isinstance(code, str) else None, meta
        if isinstance(error, str):
            return error, None, {}
    return fallback, None, {}


def from_upstream(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> UpstreamError:
    """Map an upstream HTTP error answer to the Anthropic status and type."""
    message, code, _ = _upstream_message(payload, f"upstream returned HTTP {status}")
    out_status, out_type = _UPSTREAM_STATUS_MAP.get(status, (500, "api_error"))
    if out_status == 400:
        rewritten = context_overflow_message(message)
        if rewritten is not None:
            message = rewritten
    out_headers: dict[str, str] = {}
    retry_after = (headers or {}).get("retry-after")
    if retry_after and out_status in (429, 529, 503, 500):
        out_headers["retry-after"] = retry_after
    if code == "context_length_exceeded":
        out_status, out_type = 400, "invalid_request_error"
    err = UpstreamError(
        f"{message}" if status < 500 else f"upstream error: {message}",
        status=out_status,
        error_type=out_type,
        headers=out_headers,
    )
    err.retryable = status in _RETRYABLE_STATUSES
    return err


def stream_error(payload: Any) -> tuple[str, str]:
    """Map a mid-stream OpenRouter error object to (Anthropic error.type, message)."""
    message, code, _ = _upstream_message({"error": payload}, "upstream stream error")
    numeric = payload.get("code") if isinstance(payload, dict) else None
    if code in _STREAM_ERROR_TYPES:
        error_type = _STREAM_ERROR_TYPES[code]
    elif isinstance(numeric, int) and numeric in _UPSTREAM_STATUS_MAP:
        error_type = _UPSTREAM_STATUS_MAP[numeric][1]
    else:
        error_type = "api_error"
    if error_type == "invalid_request_error":
        message = context_overflow_message(message) or message
    return error_type, message
