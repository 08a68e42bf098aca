"""create_app(settings): the ASGI application.

Owns the lifespan (the upstream client, the model list), routing, client-key checks, the
Anthropic error envelope and client-disconnect handling. Handlers live in `api/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from typing import Any

import orjson

from . import __version__
from .api import messages, models
from .errors import AuthenticationFailed, GatewayError, NotFound, error_body
from .gateway import Gateway, RequestContext
from .http import Receive, Request, Response, Scope, Send, json_response, send_response
from .observability import log_request
from .profiles import Profiles
from .routing import Router
from .settings import Settings
from .translate.sse import encode_event
from .upstream import Upstream
from .upstream.openrouter import OpenRouterUpstream

log = logging.getLogger("openrouter_anthropic")

_PUBLIC_PATHS = frozenset({"/", "/health"})


class App:
    def __init__(self, settings: Settings, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.router = Router(settings.big_model, settings.small_model, settings.aliases,
                             settings.fallbacks)
        self.profiles = Profiles()
        self._upstream = upstream
        self._gateway: Gateway | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.started_at = time.time()

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
            self._gateway = Gateway(self.settings, upstream, self.router, self.profiles)
        return self._gateway

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
        for task in list(self._background):
            task.cancel()
        if self._upstream is not None:
            await self._upstream.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = "req_" + secrets.token_hex(12)
        request = Request.from_scope(scope, receive, request_id)
        ctx = RequestContext(request_id=request_id)
        started = time.perf_counter()
        status = 500
        task = asyncio.current_task()
        disconnected = False

        async def watch_disconnect() -> None:
            nonlocal disconnected
            # Only after the body was read: until then the handler owns receive().
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    if task is not None:
                        task.cancel()
                    return

        watcher: asyncio.Task[None] | None = None

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(watch_disconnect())

        request.after_body = start_watching
        try:
            response = await self._respond(request, ctx)
            status = response.status
            if response.stream is not None:
                response.stream = _guard_stream(response.stream, request_id)
            await send_response(send, response, request_id)
        except asyncio.CancelledError:
            if not disconnected:
                raise
            status = 499
            if task is not None:
                task.uncancel()
        finally:
            if watcher is not None:
                watcher.cancel()
            if self.settings.access_log or status >= 500:
                log_request(request, ctx, status, time.perf_counter() - started)

    async def _respond(self, request: Request, ctx: RequestContext) -> Response:
        try:
            self._authenticate(request)
            return await self._dispatch(request, ctx)
        except GatewayError as exc:
            return Response(exc.status, _dumps(exc.body(request.request_id)),
                            exc.response_headers())
        except Exception:
            log.exception("unhandled error in %s %s (%s)", request.method, request.path,
                          request.request_id)
            body = error_body("api_error", "internal server error", request.request_id)
            return Response(500, _dumps(body))

    def _authenticate(self, request: Request) -> None:
        keys = self.settings.proxy_api_keys
        if not keys or request.path in _PUBLIC_PATHS:
            return
        given = request.headers.get("x-api-key")
        if not given:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if not given:
            raise AuthenticationFailed("missing API key: send it as x-api-key or "
                                       "Authorization: Bearer")
        matched = False
        for key in keys:
            # Compare against every key: timing does not reveal which one matched.
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not matched:
            raise AuthenticationFailed("invalid API key")
        request.client_key = given

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
        if path == "/health" and method in ("GET", "HEAD"):
            return json_response({"status": "ok", "version": __version__})
        if path == "/" and method in ("GET", "HEAD"):
            return json_response({"name": "openrouter-anthropic-server",
                                  "version": __version__})
        known = {"/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/health", "/"}
        if path in known or path.startswith("/v1/models/"):
            raise GatewayError(f"method {method} is not allowed on {path}", status=405,
                               error_type="invalid_request_error")
        raise NotFound(f"not found: {method} {request.path}")


async def _guard_stream(stream: Any, request_id: str) -> Any:
    """After the 200 went out, any failure still ends as an Anthropic `error` event."""
    try:
        async for chunk in stream:
            yield chunk
    except GatewayError as exc:
        yield encode_event("error", exc.body(request_id))
    except Exception:
        log.exception("stream %s failed", request_id)
        yield encode_event("error", error_body("api_error", "internal server error",
                                               request_id))
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def create_app(settings: Settings, upstream: Upstream | None = None) -> App:
    return App(settings, upstream)
