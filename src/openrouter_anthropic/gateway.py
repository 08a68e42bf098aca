"""The request path: route -> translate -> upstream -> translate back.

`Gateway.messages` (non-streaming) is the seam that batches and tool loops call without
HTTP; `Gateway.open_stream` returns the SSE bytes of a streamed answer after the upstream
has accepted the request, so errors before the first byte are ordinary HTTP errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequest, UpstreamError
from .profiles import Profiles
from .routing import Route, Router
from .settings import Settings
from .tokens import count_chat_tokens
from .translate.common import new_message_id, usage
from .translate.request import ChatPlan, RequestOptions, build_chat_request
from .translate.response import chat_to_message
from .translate.sse import PING, encode_event
from .translate.stream import State, StreamTranslator
from .upstream import Upstream, UpstreamStream

log = logging.getLogger("openrouter_anthropic.gateway")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    session_id: str | None = None
    body_size: int = 0
    # Filled in as the request runs; read by the access log.
    requested_model: str | None = None
    upstream_model: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    first_token_at: float | None = None


class Gateway:
    def __init__(
        self, settings: Settings, upstream: Upstream, router: Router, profiles: Profiles
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.router = router
        self.profiles = profiles

    def plan(self, body: Mapping[str, Any], ctx: RequestContext) -> tuple[Route, ChatPlan]:
        model = body.get("model")
        if model is None:
            raise InvalidRequest("model: Field required")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: Input should be a valid string")
        route = self.router.resolve(model)
        ctx.requested_model = model
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
        route, plan = self.plan(body, ctx)
        if plan.max_tokens == 0:
            return self._prewarm_answer(route, plan)
        plan.body.pop("stream", None)
        completion = await self.upstream.complete(plan.body, {})
        message = chat_to_message(completion, route.requested, plan.names, plan.omit_thinking,
                                  plan.stop_sequences)
        ctx.usage = message["usage"]
        return message

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
        route, plan = self.plan(body, ctx)
        if plan.max_tokens == 0:
            return _replay_as_stream(self._prewarm_answer(route, plan))
        plan.body["stream"] = True
        upstream = await self.upstream.open_stream(plan.body, {})
        translator = StreamTranslator(
            message_id=new_message_id(),
            model=route.requested,
            names=plan.names,
            input_tokens_estimate=max(ctx.body_size // 4, 1),
            omit_thinking=plan.omit_thinking,
            stop_sequences=plan.stop_sequences,
        )
        return self._relay(upstream, translator, ctx)

    async def _relay(
        self, upstream: UpstreamStream, translator: StreamTranslator, ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        ping_interval = self.settings.ping_interval
        idle_timeout = self.settings.idle_timeout
        try:
            yield _encode(translator.start())
            last_data = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(ping_interval):
                        items = await upstream.read()
                except TimeoutError:
                    if time.monotonic() - last_data >= idle_timeout:
                        yield _encode(translator.fail(
                            "timeout_error", f"the upstream sent nothing for {idle_timeout:g} s"
                        ))
                        return
                    yield PING
                    continue
                except UpstreamError as exc:
                    yield _encode(translator.fail(exc.error_type, exc.message))
                    return
                if items is None:
                    yield _encode(translator.finish())
                    return
                last_data = time.monotonic()
                out: list[bytes] = []
                for item in items:
                    if item is None:
                        out.append(PING)
                        continue
                    if ctx.first_token_at is None and item.get("choices"):
                        ctx.first_token_at = last_data
                    out.append(_encode(translator.feed(item)))
                    if translator.state in (State.DONE, State.FAILED):
                        break
                if out:
                    yield b"".join(out)
                if translator.state in (State.DONE, State.FAILED):
                    return
        finally:
            if translator.final_usage is not None:
                ctx.usage = usage(translator.final_usage)
            if translator.error is not None:
                log.warning("stream %s ended with %s: %s", ctx.request_id, *translator.error)
            await upstream.close()

    def count_tokens(self, body: Mapping[str, Any], ctx: RequestContext) -> int:
        """Count the request as it will be sent upstream (system and tools included)."""
        count_body = dict(body)
        count_body.setdefault("max_tokens", 1)
        count_body.pop("stream", None)
        _, plan = self.plan(count_body, ctx)
        return count_chat_tokens(plan.body)


def _encode(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(encode_event(name, data) for name, data in events)


async def _replay_as_stream(message: dict[str, Any]) -> AsyncIterator[bytes]:
    """A complete message as the Anthropic event sequence (used for local answers)."""
    start = {**message, "content": [], "stop_reason": None}
    yield encode_event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        yield encode_event("content_block_start", {"type": "content_block_start",
                                                   "index": index, "content_block": block})
        yield encode_event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield encode_event("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": message["usage"],
    })
    yield encode_event("message_stop", {"type": "message_stop"})
