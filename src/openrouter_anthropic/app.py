"""create_app(settings): the ASGI application.

Owns the lifespan (the upstream client, the model list), routing, client and admin keys,
rate limits, CORS, the Anthropic error envelope, client disconnects, and what every request
leaves behind (a log line, metrics, the error store). Handlers live in `api/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from .api import admin, debug, health, messages, models
from .api import batches as batch_api
from .batches.config import BatchConfig
from .batches.service import BatchService
from .cors import allowed_origin, cors_headers, preflight_headers
from .errors import (
    AuthenticationFailed,
    GatewayError,
    NotFound,
    RateLimited,
    UpstreamError,
    error_body,
)
from .errorstore import ErrorStore
from .gateway import Gateway, RequestContext
from .http import Receive, Request, Response, Scope, Send, json_response, send_response
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import GatewayMetrics
from .observability import log_request
from .profiles import Profiles
from .ratelimit import Decision, Limits, RateLimiter, make_rate_limiter
from .routing import Router
from .settings import Settings
from .tools.mcp_connector import install_mcp
from .tools.mcp_manager import McpManager
from .tools.tool_metrics import ToolMetrics
from .tools.workspace import Workspaces
from .translate.sse import encode_event
from .upstream import Upstream
from .upstream.openrouter import OpenRouterUpstream

log = logging.getLogger("openrouter_anthropic")

_PUBLIC_PATHS = frozenset({"/", "/health"})
_ADMIN_PREFIXES = ("/debug/", "/metrics", "/admin/", "/tool-metrics")
_ROUTE_LABELS = {
    "/v1/messages": "/v1/messages",
    "/v1/messages/count_tokens": "/v1/messages/count_tokens",
    "/v1/models": "/v1/models",
    "/health": "/health",
    "/health/detailed": "/health/detailed",
    "/metrics": "/metrics",
    "/": "/",
}


class App:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.router = Router(settings.big_model, settings.small_model, settings.aliases,
                             settings.fallbacks)
        self.profiles = Profiles()
        self.metrics = GatewayMetrics()
        self.errors = ErrorStore(
            settings.error_store_size,
            secrets=[settings.openrouter_api_key, settings.admin_api_key,
                     *settings.proxy_api_keys],
        )
        self._upstream = upstream
        self._gateway: Gateway | None = None
        self._rate_limiter = rate_limiter
        self._limits: dict[str, Limits | None] = {}  # per client key, built once
        self._probe: health.UpstreamProbe | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.started_at = time.time()
        batch_config = BatchConfig.from_mapping(settings.batches)
        self.batches = (BatchService(batch_config, self._batch_gateway)
                        if batch_config.enabled else None)
        self.tool_metrics = ToolMetrics(self.metrics.registry)
        self.mcp_manager = McpManager.from_settings(settings)  # None: no managed MCP server
        # The built-in `workspace` MCP server, for keys with a workspace root.
        self.workspaces = Workspaces.from_settings(settings.workspace) if settings.workspace \
            else None
        if self.mcp_manager is not None:
            self.mcp_manager.register_metrics(self.metrics.registry)

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            upstream = self._upstream or OpenRouterUpstream(
                self.settings.openrouter_base_url,
                self.settings.openrouter_api_key,
                app_url=self.settings.app_url,
                app_title=self.settings.app_title,
                connect_timeout=self.settings.connect_timeout,
                first_byte_timeout=self.settings.first_byte_timeout,
                max_connections=self.settings.max_connections,
            )
            self._upstream = upstream
            self._gateway = Gateway(self.settings, upstream, self.router, self.profiles,
                                    self.metrics)
            install_mcp(self._gateway.tool_loop, self.settings, self.mcp_manager,
                        self.tool_metrics, self.workspaces)
        return self._gateway

    def _batch_gateway(self) -> Gateway:
        # The batch layer retries (and records) each attempt itself: no hidden retries here.
        gateway = Gateway(self.settings.replace(max_retries=0), self.gateway.upstream,
                          self.router, self.profiles, self.metrics)
        install_mcp(gateway.tool_loop, self.settings, self.mcp_manager, self.tool_metrics,
                    self.workspaces)
        return gateway

    @property
    def rate_limiter(self) -> RateLimiter | None:
        if self._rate_limiter is None and self.settings.rate_limits_enabled:
            self._rate_limiter = make_rate_limiter(self.settings.redis_url or None)
        return self._rate_limiter

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        gateway = self.gateway
        if self.batches is not None:
            await self.batches.start()  # resumes pending batches in the background
        if self.mcp_manager is not None:
            self.mcp_manager.start()  # supervisor tasks only: start-up does not wait
        if self.settings.fetch_model_list:
            # Not awaited: start-up must not wait for (or fail on) the upstream.
            task = asyncio.create_task(self._load_model_list(gateway))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _load_model_list(self, gateway: Gateway) -> None:
        try:
            entries = await gateway.upstream.list_models()
        except Exception as exc:  # any failure leaves the shipped table in place
            log.warning("model list not loaded (%s); using the shipped model table", exc)
            return
        taken = self.profiles.update_from_model_list(entries)
        log.info("loaded %d models from the upstream model list", taken)

    async def shutdown(self) -> None:
        if self.batches is not None:
            await self.batches.stop()  # before the upstream closes: in-flight calls end first
        if self.mcp_manager is not None:
            await self.mcp_manager.stop()
        for task in list(self._background):
            task.cancel()
        if self._upstream is not None:
            await self._upstream.close()
        if self._rate_limiter is not None:
            await self._rate_limiter.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Not a secret, only unique: getrandbits avoids a getrandom() call per request.
        request_id = f"req_{random.getrandbits(96):024x}"
        request = Request.from_scope(scope, receive, request_id)
        ctx = RequestContext(request_id=request_id)
        started = time.perf_counter()
        status = 500
        task = asyncio.current_task()
        disconnected = False
        watcher: asyncio.Task[None] | None = None

        async def watch_disconnect() -> None:
            nonlocal disconnected
            # Started once the body is read: until then the handler owns receive().
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = ctx.client_disconnected = True
                    if task is not None:
                        task.cancel()
                    return

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(watch_disconnect())

        request.after_body = start_watching
        origin = allowed_origin(request.headers, self.settings.cors_origins)
        try:
            if request.method == "OPTIONS" and origin is not None:
                response = Response(204, headers=preflight_headers(origin, request.headers))
            else:
                response = await self._respond(request, ctx)
            if origin is not None:
                response.headers.update(cors_headers(origin))
            status = response.status
            if response.stream is not None:
                response.stream = self._guard_stream(response.stream, ctx)
            await send_response(send, response, request_id)
        except asyncio.CancelledError:
            # The client left (499), or the shutdown grace ran out after the stream's
            # `error` event went out: either way this request is over, not failed.
            status = 499 if disconnected else status
            if task is not None:
                task.uncancel()
            if not disconnected:
                # End the chunked body properly so the client sees a complete response.
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b""})
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._finish(request, ctx, status, time.perf_counter() - started)

    async def _respond(self, request: Request, ctx: RequestContext) -> Response:
        try:
            self._authenticate(request, ctx)
            if request.method == "POST" and request.path.rstrip("/") == "/v1/messages":
                return await self._limited(request, ctx)
            return await self._dispatch(request, ctx)
        except GatewayError as exc:
            if isinstance(exc, UpstreamError):
                self.metrics.upstream_error(exc.error_type)
            self._record_error(request, ctx, exc.status, exc.error_type, exc.message)
            response = Response(exc.status, orjson.dumps(exc.body(request.request_id)),
                                exc.response_headers())
            response.headers.update(ctx.rate_limit_headers)
            return response
        except Exception:
            log.exception("unhandled error in %s %s (%s)", request.method, request.path,
                          request.request_id)
            self._record_error(request, ctx, 500, "api_error", "internal server error")
            body = error_body("api_error", "internal server error", request.request_id)
            return Response(500, orjson.dumps(body))

    async def _limited(self, request: Request, ctx: RequestContext) -> Response:
        """POST /v1/messages under the client key's rate limits."""
        limiter, limits = self.rate_limiter, self._limits_for(request.client_key)
        if limiter is None or limits is None:
            return await self._dispatch(request, ctx)
        estimate = _declared_size(request) // 4
        decision: Decision = await limiter.acquire(ctx.key_id, limits, estimate)
        ctx.rate_limit_headers = dict(decision.headers)
        if not decision.allowed:
            self.metrics.rate_limited(ctx.key_id)
            raise RateLimited(
                "rate limit exceeded for this API key; retry in "
                f"{max(math.ceil(decision.retry_after), 1)} s",
                headers=dict(decision.headers),
            )
        ctx.rate_limit = (limiter, limits, estimate)
        response = await self._dispatch(request, ctx)
        response.headers.update(decision.headers)
        return response

    def _limits_for(self, client_key: str | None) -> Limits | None:
        key = client_key or ""
        if key not in self._limits:
            self._limits[key] = self._build_limits(key)
        return self._limits[key]

    def _build_limits(self, client_key: str) -> Limits | None:
        settings = self.settings
        override = settings.key_rate_limits.get(client_key, {})
        rpm = override.get("requests_per_minute", settings.rate_limit_requests_per_minute)
        tpm = override.get("tokens_per_minute", settings.rate_limit_tokens_per_minute)
        if not rpm and not tpm:
            return None
        return Limits(requests_per_minute=rpm or None, tokens_per_minute=tpm or None)

    def _authenticate(self, request: Request, ctx: RequestContext) -> None:
        path = request.path
        if path.startswith(_ADMIN_PREFIXES):
            self._authenticate_admin(request)
            return
        keys = self.settings.proxy_api_keys
        if not keys or path in _PUBLIC_PATHS:
            return
        given = _presented_key(request)
        if not given:
            raise AuthenticationFailed("missing API key: send it as x-api-key or "
                                       "Authorization: Bearer")
        if not _matches_any(given, keys):
            raise AuthenticationFailed("invalid API key")
        request.client_key = given
        ctx.key_id = key_id(given)

    def _authenticate_admin(self, request: Request) -> None:
        admin = self.settings.admin_api_key
        if request.path.startswith("/metrics") and not admin:
            return  # metrics stay readable on a gateway without an admin key
        if not admin:
            raise NotFound(f"not found: {request.method} {request.path}")
        given = _presented_key(request)
        if not given or not _matches_any(given, (admin,)):
            raise AuthenticationFailed("this endpoint needs the admin key (ADMIN_API_KEY)")

    async def _dispatch(self, request: Request, ctx: RequestContext) -> Response:
        method, path = request.method, request.path.rstrip("/") or "/"
        if path == "/v1/messages" and method == "POST":
            return await messages.create_message(self.gateway, request, ctx)
        if path == "/v1/messages/count_tokens" and method == "POST":
            return await messages.count_tokens(self.gateway, request, ctx)
        if path == "/v1/models" and method == "GET":
            return models.list_models(request, self.router, self.profiles)
        if path.startswith("/v1/models/") and method == "GET":
            return models.get_model(path[len("/v1/models/"):], self.router, self.profiles)
        if path in ("/health", "/") and method in ("GET", "HEAD"):
            return json_response(health.liveness())
        if path == "/health/detailed" and method == "GET":
            if self._probe is None:
                self._probe = health.UpstreamProbe(self.gateway.upstream)
            extra = {"model_table": self.profiles.source,
                     "errors": self.errors.stats()["size"]}
            return json_response(await health.detailed(self.settings, self._probe,
                                                       self.started_at, extra))
        if path == "/metrics" and method == "GET":
            return Response(200, self.metrics.render().encode(),
                            content_type=METRICS_CONTENT_TYPE)
        if admin.handles(path):
            return admin.dispatch(request, path, self.mcp_manager, self.tool_metrics)
        if path.startswith("/debug/errors") and method == "GET":
            if not self.settings.debug_endpoints:
                raise NotFound(f"not found: {method} {request.path}")
            return debug.errors(path, request, self.errors)
        if self.batches is not None and (path == batch_api.PREFIX
                                         or path.startswith(batch_api.PREFIX + "/")):
            return await batch_api.dispatch(self.batches, self.settings.public_base_url,
                                            request, ctx, path)
        known = {"/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/health", "/"}
        if path in known or path.startswith("/v1/models/"):
            raise GatewayError(f"method {method} is not allowed on {path}", status=405,
                               error_type="invalid_request_error")
        raise NotFound(f"not found: {method} {request.path}")

    async def _guard_stream(
        self, stream: AsyncIterator[bytes], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """After the 200 went out, any failure still ends as an Anthropic `error` event."""
        self.metrics.stream_started()
        try:
            async for chunk in stream:
                yield chunk
        except asyncio.CancelledError:
            if ctx.client_disconnected:
                raise
            # The shutdown grace period ran out: tell the client before the connection goes.
            ctx.stream_error = ("overloaded_error", "the server is shutting down")
            yield encode_event("error", error_body("overloaded_error",
                                                   "the server is shutting down",
                                                   ctx.request_id))
            raise
        except GatewayError as exc:
            ctx.stream_error = (exc.error_type, exc.message)
            yield encode_event("error", exc.body(ctx.request_id))
        except Exception:
            log.exception("stream %s failed", ctx.request_id)
            ctx.stream_error = ("api_error", "internal server error")
            yield encode_event("error", error_body("api_error", "internal server error",
                                                   ctx.request_id))
        finally:
            self.metrics.stream_finished()
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def _finish(
        self, request: Request, ctx: RequestContext, status: int, seconds: float
    ) -> None:
        """What every request leaves behind: metrics, rate-limit accounting, error store, log."""
        model = ctx.requested_model or ""
        route = _route_label(request.path)
        self.metrics.request_finished(route, model, status, seconds)
        usage = ctx.usage
        if usage:
            self.metrics.tokens(model, usage.get("input_tokens", 0),
                                usage.get("output_tokens", 0),
                                usage.get("cache_read_input_tokens", 0),
                                usage.get("cache_creation_input_tokens", 0))
        if ctx.cost:
            self.metrics.cost(model, ctx.cost)
        if ctx.first_token_at is not None:
            self.metrics.first_token(model, ctx.first_token_at - ctx.started_at)
        if ctx.stream_error is not None:
            self._record_error(request, ctx, 200, *ctx.stream_error)
        if ctx.rate_limit is not None:
            limiter, limits, estimate = ctx.rate_limit
            actual = sum(usage.get(k, 0) for k in ("input_tokens", "output_tokens",
                                                   "cache_read_input_tokens",
                                                   "cache_creation_input_tokens"))
            with contextlib.suppress(Exception):
                await limiter.record(ctx.key_id, limits, actual, estimate)
        if self.settings.access_log or status >= 500:
            log_request(request, ctx, status, seconds)

    def _record_error(
        self, request: Request, ctx: RequestContext, status: int, error_type: str, message: str
    ) -> None:
        self.errors.record(
            request.request_id,
            status=status,
            error_type=error_type,
            message=message,
            route=f"{request.method} {request.path}",
            model=ctx.requested_model,
            detail={"upstream_model": ctx.upstream_model, "key_id": ctx.key_id},
        )


def key_id(key: str) -> str:
    """A stable, non-secret name for a client key in logs and metrics."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _presented_key(request: Request) -> str | None:
    given = request.headers.get("x-api-key")
    if given:
        return given
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _matches_any(given: str, keys: tuple[str, ...]) -> bool:
    matched = False
    for key in keys:
        # Compare against every key: timing does not reveal which one matched.
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched


def _declared_size(request: Request) -> int:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else 0


def _route_label(path: str) -> str:
    path = path.rstrip("/") or "/"
    if path in _ROUTE_LABELS:
        return _ROUTE_LABELS[path]
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path.startswith("/debug/"):
        return "/debug"
    return "other"


def create_app(
    settings: Settings, upstream: Upstream | None = None, rate_limiter: RateLimiter | None = None
) -> App:
    return App(settings, upstream, rate_limiter)
