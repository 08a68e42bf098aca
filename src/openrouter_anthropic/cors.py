"""CORS for browser clients (the Anthropic JS SDK's direct browser access). Off by default:
only origins in `cors_origins` (or `*`) get the headers."""

from __future__ import annotations

from collections.abc import Mapping

_EXPOSED = "request-id, retry-after, x-should-retry, anthropic-ratelimit-requests-remaining"


def allowed_origin(headers: Mapping[str, str], origins: tuple[str, ...]) -> str | None:
    origin = headers.get("origin")
    if not origin or not origins:
        return None
    if "*" in origins or origin in origins:
        return origin
    return None


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-expose-headers": _EXPOSED,
        "vary": "Origin",
    }


def preflight_headers(origin: str, headers: Mapping[str, str]) -> dict[str, str]:
    requested = headers.get("access-control-request-headers", "")
    return {
        **cors_headers(origin),
        "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
        "access-control-allow-headers": requested or "content-type, x-api-key, authorization",
        "access-control-max-age": "600",
    }
