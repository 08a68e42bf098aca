"""The request path: route -> translate -> upstream -> translate back.

`Gateway.messages` (non-streaming) is the seam that batches call without HTTP;
`Gateway.open_stream` returns the SSE bytes of a streamed answer after the upstream has
accepted the request, so errors before the first byte are ordinary HTTP errors.

A request that declares a gateway-run tool (web_search, web_fetch, ...) goes through the tool
loop (tools/loop.py), which calls back here for each model turn: `model_turn` (one
non-streaming call) and `open_events` (one streamed call as Anthropic events, encoded to SSE
bytes only at the end). Every other request takes the plain path; its only extra cost is
the registry's scan of `tools` for a server-tool type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from .errors import InvalidRequest, UpstreamError
from .metrics import GatewayMetrics
from .profiles import Profiles
from .retry import RetryPolicy, call_with_retries
from .routing import Route, Router
from .settings import Settings
from .tokens import count_chat_tokens
from .tools.providers import build_tool_loop
from .translate.common import new_message_id, usage
from .translate.request import ChatPlan, RequestOptions, build_chat_request
from .translate.response import chat_to_message
from .translate.sse import encode_event
from .translate.stream import Event, State, StreamTranslator
from .translate.structured import extract_json, feedback, validation_errors
from .upstream import Upstream, UpstreamStream

log = logging.getLogger("openrouter_anthropic.gateway")
_START_COALESCE_S = 0.05
_PING_EVENT: Event = ("ping", {"type": "ping"})
T = TypeVar("T")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    session_id: str | None = None
    body_size: int = 0
    # Filled in as the request runs; read by the access log.
    requested_model: str | None = None
    upstream_model: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    key_id: str = "anonymous"
    # The raw `anthropic-beta` header (parsed only by the tool loop: the MCP listing beta).
    anthropic_beta: str = ""
    client_disconnected: bool = False
    stream_error: tuple[str, str] | None = None
    rate_limit_headers: dict[str, str] = field(default_factory=dict)
    # (limiter, limits, estimated tokens) when the request counts against a rate limit.
    rate_limit: tuple[Any, Any, int] | None = None


class Gateway:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream,
        router: Router,
        profiles: Profiles,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.upstream = upstream
        self.router = router
        self.profiles = profiles
        self.retry_policy = RetryPolicy(
            max_retries=settings.max_retries,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            max_wait=settings.retry_max_wait,
        )
        self.tool_loop = build_tool_loop(self)

    def plan(self, body: Mapping[str, Any], ctx: RequestContext) -> tuple[Route, ChatPlan]:
        model = body.get("model")
        if model is None:
            raise InvalidRequest("model: Field required")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: Input should be a valid string")
        ctx.requested_model = model
        route = self.router.resolve(model)
        ctx.upstream_model = route.upstream
        options = RequestOptions(
            keep_attribution_block=self.settings.keep_attribution_block,
            session_id=ctx.session_id,
            provider=self.settings.provider or None,
        )
        plan = build_chat_request(body, route.upstream, self.profiles.get(route.upstream),
                                  options)
        return route, plan

    async def messages(self, body: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """One non-streaming Messages call (also used without HTTP)."""
        if self.tool_loop.claims(body, ctx.key_id):
            return await self.tool_loop.messages(body, ctx)
        return await self.model_turn(body, ctx)

    async def model_turn(self, body: Mapping[str, Any], ctx: RequestContext
                         ) -> dict[str, Any]:
        """One model call, non-streaming, with no gateway-run tools."""
        route, plan = self.plan(body, ctx)
        if plan.max_tokens == 0:
            return self._prewarm_answer(route, plan)
        plan.body.pop("stream", None)
        if plan.output_schema is not None:
            return await self._structured(route, plan, plan.output_schema, ctx)
        message = await self._complete(route, plan, plan.body, ctx)
        ctx.usage = message["usage"]
        return message

    async def _complete(
        self, route: Route, plan: ChatPlan, body: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        completion = await self._with_retries(
            route, body, ctx, lambda b: self.upstream.complete(b, {})
        )
        raw_usage = completion.get("usage")
        if isinstance(raw_usage, Mapping) and isinstance(raw_usage.get("cost"), int | float):
            ctx.cost = (ctx.cost or 0.0) + float(raw_usage["cost"])
        return chat_to_message(completion, route.requested, plan.names, plan.omit_thinking,
                               plan.stop_sequences)

    async def _structured(
        self, route: Route, plan: ChatPlan, schema: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """Ask, validate against the schema, re-ask with the errors (a bounded number)."""
        body = plan.body
        total: dict[str, Any] = {}
        errors: list[str] = []
        for _ in range(self.settings.structured_output_retries + 1):
            message = await self._complete(route, plan, body, ctx)
            total = _add_usage(total, message["usage"])
            text = "".join(b["text"] for b in message["content"] if b["type"] == "text")
            try:
                value = extract_json(text)
                errors = validation_errors(value, schema)
            except ValueError as exc:
                errors = [str(exc)]
            if not errors:
                blocks = [b for b in message["content"] if b["type"] != "text"]
                message["content"] = [*blocks, {"type": "text",
                                                "text": orjson.dumps(value).decode()}]
                message["usage"] = ctx.usage = total
                return message
            if message["stop_reason"] == "max_tokens":
                break
            body = {**body, "messages": [*body["messages"],
                                         {"role": "assistant", "content": text},
                                         {"role": "user", "content": feedback(errors)}]}
        ctx.usage = total
        raise UpstreamError(
            "the model's answer did not match output_config.format after "
            f"{self.settings.structured_output_retries + 1} attempts: {'; '.join(errors)}",
            status=500,
            error_type="api_error",
            headers={"x-should-retry": "false"},
        )

    def _prewarm_answer(self, route: Route, plan: ChatPlan) -> dict[str, Any]:
        # max_tokens: 0 asks for no generation (cache pre-warm): nothing to send upstream.
        return {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": route.requested,
            "content": [],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": usage(None, count_chat_tokens(plan.body)),
        }

    async def open_stream(
        self, body: Mapping[str, Any], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        if self.tool_loop.claims(body, ctx.key_id):
            return await self.tool_loop.open_stream(body, ctx)
        return await self._open(body, ctx, _encode)

    async def open_events(
        self, body: Mapping[str, Any], ctx: RequestContext
    ) -> AsyncGenerator[list[Event], None]:
        """One streamed model call, with no gateway-run tools, as batches of Anthropic
        events (message_start ... message_stop, or an `error` event)."""
        return await self._open(body, ctx, _events)

    async def _open(
        self, body: Mapping[str, Any], ctx: RequestContext,
        emit: Callable[[list[Event]], T],
    ) -> AsyncGenerator[T, None]:
        route, plan = self.plan(body, ctx)
        if plan.max_tokens == 0:
            return _replay_as_stream(self._prewarm_answer(route, plan), emit)
        if plan.output_schema is not None:
            # The answer must be validated whole before the client sees it.
            plan.body.pop("stream", None)
            message = await self._structured(route, plan, plan.output_schema, ctx)
            return _replay_as_stream(message, emit)
        plan.body["stream"] = True
        upstream = await self._with_retries(
            route, plan.body, ctx, lambda b: self.upstream.open_stream(b, {})
        )
        translator = StreamTranslator(
            message_id=new_message_id(),
            model=route.requested,
            names=plan.names,
            input_tokens_estimate=max(ctx.body_size // 4, 1),
            omit_thinking=plan.omit_thinking,
            stop_sequences=plan.stop_sequences,
            request_id=ctx.request_id,
        )
        return self._relay(upstream, translator, ctx, emit)

    async def _relay(
        self, upstream: UpstreamStream, translator: StreamTranslator, ctx: RequestContext,
        emit: Callable[[list[Event]], T],
    ) -> AsyncGenerator[T, None]:
        """Translate the upstream stream; `emit` turns each batch of events into what is
        yielded (SSE bytes for the client, or the events themselves for the tool loop)."""
        ping_interval = self.settings.ping_interval
        idle_timeout = self.settings.idle_timeout
        # message_start goes out with the first upstream bytes (one write instead of two),
        # or alone after a short wait when the upstream is slow to start.
        pending = translator.start()
        wait = min(ping_interval, _START_COALESCE_S)
        last_data = time.monotonic()
        try:
            while True:
                try:
                    async with asyncio.timeout(wait):
                        items = await upstream.read()
                except TimeoutError:
                    wait = ping_interval
                    if time.monotonic() - last_data >= idle_timeout:
                        pending.extend(translator.fail(
                            "timeout_error", f"the upstream sent nothing for {idle_timeout:g} s"
                        ))
                        yield emit(pending)
                        return
                    if not pending:  # silence: keep the client's idle watchdog fed
                        pending.append(_PING_EVENT)
                    yield emit(pending)
                    pending = []
                    continue
                except UpstreamError as exc:
                    pending.extend(translator.fail(exc.error_type, exc.message))
                    yield emit(pending)
                    return
                wait = ping_interval
                if items is None:
                    pending.extend(translator.finish())
                    yield emit(pending)
                    return
                last_data = time.monotonic()
                for item in items:
                    if item is None:
                        pending.append(_PING_EVENT)
                        continue
                    pending.extend(translator.feed(item))
                    if ctx.first_token_at is None and translator.blocks_started:
                        ctx.first_token_at = last_data
                    if translator.state in (State.DONE, State.FAILED):
                        break
                if pending:
                    yield emit(pending)
                    pending = []
                if translator.state in (State.DONE, State.FAILED):
                    return
        finally:
            if translator.final_usage is not None:
                ctx.usage = usage(translator.final_usage)
                cost = translator.final_usage.get("cost")
                if isinstance(cost, int | float):
                    ctx.cost = float(cost)
            if translator.error is not None:
                ctx.stream_error = translator.error
                log.warning("stream %s ended with %s: %s", ctx.request_id, *translator.error)
            await upstream.close()

    async def _with_retries(
        self,
        route: Route,
        body: dict[str, Any],
        ctx: RequestContext,
        send: Callable[[dict[str, Any]], Awaitable[T]],
    ) -> T:
        def call(model: str) -> Awaitable[T]:
            ctx.upstream_model = model
            return send(body if model == body["model"] else self._body_for(body, model))

        return await call_with_retries(
            (body["model"], *route.fallbacks), call, self.retry_policy, self._on_retry
        )

    def _on_retry(self, model: str, error: UpstreamError) -> None:
        if self.metrics is not None:
            self.metrics.upstream_retry(error.error_type)

    def _body_for(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The same request for a fallback model, within that model's output limit."""
        out = {**body, "model": model}
        profile = self.profiles.get(model)
        if profile.max_output is not None:
            out["max_tokens"] = max(min(int(body["max_tokens"]), profile.max_output), 1)
        return out

    def count_tokens(self, body: Mapping[str, Any], ctx: RequestContext) -> int:
        """Count the request as it will be sent upstream (system and tools included)."""
        count_body = dict(body)
        if self.tool_loop.claims(count_body, ctx.key_id):
            count_body = self.tool_loop.counting_body(count_body)
        count_body.setdefault("max_tokens", 1)
        count_body.pop("stream", None)
        _, plan = self.plan(count_body, ctx)
        return count_chat_tokens(plan.body)


def _add_usage(total: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, int):
            out[key] = out.get(key, 0) + value
        elif key not in out:
            out[key] = value
    return out


def _encode(events: list[Event]) -> bytes:
    return b"".join(encode_event(name, data) for name, data in events)


def _events(events: list[Event]) -> list[Event]:
    return events


async def _replay_as_stream(
    message: dict[str, Any], emit: Callable[[list[Event]], T]
) -> AsyncGenerator[T, None]:
    """A complete message as the Anthropic event sequence (used for local answers)."""
    start = {**message, "content": [], "stop_reason": None}
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message["content"]):
        shell, deltas = _block_as_deltas(block)
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": shell}))
        events.extend(("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": delta}) for delta in deltas)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": message["usage"],
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    yield emit(events)


def _block_as_deltas(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": ""}, [{"type": "text_delta", "text": block["text"]}]
    if kind == "tool_use":
        return ({**block, "input": {}},
                [{"type": "input_json_delta",
                  "partial_json": orjson.dumps(block["input"]).decode()}])
    if kind == "thinking":
        return ({"type": "thinking", "thinking": "", "signature": ""},
                [{"type": "thinking_delta", "thinking": block["thinking"]},
                 {"type": "signature_delta", "signature": block["signature"]}])
    return block, []
