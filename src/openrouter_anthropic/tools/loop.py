"""The tool loop: model call -> run the gateway-run tools it called -> call again.

Works at the Anthropic level, on top of the gateway's plain path (one model turn per call):

1. The declared server tools (and MCP toolsets) become ordinary function tools named like
   the tool; client tools pass through untouched and are never run here.
2. Each model call gets the conversation with every server-tool pair of earlier turns (a
   replay, the paused turn being continued, and this loop's own turns) rewritten into
   tool_use/tool_result pairs (history.py).
3. The model's calls to gateway-run tools are shown to the client as `server_tool_use`
   (`mcp_tool_use`) blocks, run concurrently, and answered with their result blocks; a
   refused call (max_uses, rate limit, bad input) is answered too, with its error code.
4. It ends when a turn calls no gateway-run tool (that turn's stop reason), calls a client
   tool as well (`tool_use`), or after `max_iterations` model calls (`pause_turn`: the client
   sends the turn back to continue it).

Usage is summed over the model calls, with `server_tool_use` counting the calls that ran.
Streaming: one message_start/message_stop around all calls (events.py), `ping` while tools
run or the next call waits for its first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest
from ..ratelimit import Limits, MemoryRateLimiter
from ..translate.sse import PING, encode_event
from ..translate.stream import Event
from .base import Tool, ToolContext, ToolOutcome, ToolSpec, failure
from .events import LoopEvents, present_call
from .history import (
    USE_TYPES,
    conversation_urls,
    function_name,
    normalize_url,
    rewrite_messages,
)
from .registry import ToolRegistry, Toolset

if TYPE_CHECKING:
    from ..gateway import Gateway, RequestContext

log = logging.getLogger("openrouter_anthropic.tools.loop")
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
               "cache_read_input_tokens")
# Called after every call the model made to a gateway-run tool, refused ones included
# (seconds 0): (spec, outcome, seconds). For /tool-metrics.
CallObserver = Callable[[ToolSpec, ToolOutcome, float], None]


class ToolLoop:
    def __init__(self, gateway: Gateway, registry: ToolRegistry, max_iterations: int) -> None:
        self.gateway = gateway
        self.registry = registry
        self.max_iterations = max_iterations
        self.limiter = MemoryRateLimiter()
        self.observers: list[CallObserver] = []
        # Server tools the workspace toolset's WebFetch/WebSearch delegate to (providers.py).
        self.web_delegates: dict[str, Any] = {}
        # Whether a request takes the loop: the registry's scan, bound once (hot path).
        # claims(body, key_id): a key with an attached managed MCP server takes the loop.
        self.claims: Callable[[Mapping[str, Any], str | None], bool] = registry.claims

    def counting_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The request for count_tokens: client tools only (gateway-run tools' functions
        are known only once their toolsets are open; they add a few hundred tokens)."""
        client, _ = self.registry.split(body.get("tools"))
        out = {k: v for k, v in body.items() if k not in self.registry.request_fields}
        out["tools"] = client
        return out

    # -- non-streaming ----------------------------------------------------------------

    async def messages(self, body: Mapping[str, Any], rctx: RequestContext) -> dict[str, Any]:
        run = await self._start(body, rctx)
        try:
            first: dict[str, Any] | None = None
            stop: tuple[str, str | None, Any] = ("pause_turn", None, None)
            for iteration in range(self.max_iterations):
                message = await self.gateway.model_turn(run.turn_request(iteration), rctx)
                first = first or message
                run.add_usage(message["usage"])
                blocks = [run.present(block) for block in message["content"]]
                run.content.extend(blocks)
                calls = run.gateway_calls(blocks)
                if not calls:
                    stop = (message["stop_reason"], message.get("stop_sequence"),
                            message.get("stop_details"))
                    break
                run.content.extend(await self._execute(run, calls, rctx))
                if run.has_client_calls(blocks):
                    stop = ("tool_use", None, None)
                    break
            assert first is not None
            out = {**first, "content": run.content, "stop_reason": stop[0],
                   "stop_sequence": stop[1], "usage": run.usage(), **run.ctx.message_fields}
            out.pop("stop_details", None)
            if stop[2] is not None:
                out["stop_details"] = stop[2]
            return out
        finally:
            rctx.usage = run.usage()
            await run.close()

    # -- streaming --------------------------------------------------------------------

    async def open_stream(self, body: Mapping[str, Any], rctx: RequestContext
                          ) -> AsyncIterator[bytes]:
        """The SSE bytes of the whole loop, once the first model call was accepted (errors
        before that are ordinary HTTP errors, as on the plain path)."""
        run = await self._start(body, rctx)
        try:
            events = await self.gateway.open_events(run.turn_request(0), rctx)
        except BaseException:
            rctx.usage = run.usage()
            await run.close()
            raise
        return self._stream(run, events, rctx)

    async def _stream(self, run: _Run, events: AsyncGenerator[list[Event], None],
                      rctx: RequestContext) -> AsyncIterator[bytes]:
        relay = LoopEvents(run.specs, run.listings)
        run.content = relay.blocks
        run.call_functions = relay.presented
        cost = 0.0
        interval = self.gateway.settings.ping_interval
        try:
            iteration = 0
            while True:
                relay.begin_turn()
                rctx.cost = None
                async with contextlib.aclosing(events):
                    async for batch in events:
                        out = relay.relay(batch)
                        if out:
                            yield _encode(out)
                        if relay.failed:
                            return
                cost += rctx.cost or 0.0
                if relay.stop_reason is None:  # the call ended without an answer
                    return
                run.add_usage(relay.usage)
                blocks = relay.turn_blocks
                calls = run.gateway_calls(blocks)
                if not calls:
                    stop = (relay.stop_reason, relay.stop_sequence, relay.stop_details)
                    break
                running = asyncio.ensure_future(self._execute(run, calls, rctx))
                try:
                    async for ping in _pings_until(running, interval):
                        yield ping
                    results = running.result()
                finally:
                    await _cancel(running)
                yield b"".join(_encode(relay.add_block(result)) for result in results)
                iteration += 1
                if run.has_client_calls(blocks):
                    stop = ("tool_use", None, None)
                    break
                if iteration >= self.max_iterations:
                    stop = ("pause_turn", None, None)
                    break
                opening = asyncio.ensure_future(
                    self.gateway.open_events(run.turn_request(iteration), rctx))
                try:
                    async for ping in _pings_until(opening, interval):
                        yield ping
                    events = opening.result()
                except BaseException:
                    await _abandon(opening)
                    raise
            delta: dict[str, Any] = {"stop_reason": stop[0], "stop_sequence": stop[1],
                                     **run.ctx.message_fields}
            if stop[2] is not None:
                delta["stop_details"] = stop[2]
            yield _encode([("message_delta", {"type": "message_delta", "delta": delta,
                                              "usage": run.usage()}),
                           ("message_stop", {"type": "message_stop"})])
        finally:
            rctx.usage = run.usage()
            rctx.cost = cost or None
            await run.close()

    # -- shared -----------------------------------------------------------------------

    async def _start(self, body: Mapping[str, Any], rctx: RequestContext) -> _Run:
        betas = tuple(b.strip() for b in rctx.anthropic_beta.split(",") if b.strip())
        ctx = ToolContext(request_id=rctx.request_id, key_id=rctx.key_id,
                          seen_urls=conversation_urls(body), betas=betas)
        client_tools, toolsets = await self.registry.open(body, ctx)
        try:
            return _Run(body, client_tools, toolsets, ctx, self.registry)
        except BaseException:
            for toolset in toolsets:
                await toolset.close()
            raise

    async def _execute(self, run: _Run, calls: Sequence[dict[str, Any]],
                       rctx: RequestContext) -> list[dict[str, Any]]:
        """Run (or refuse) the calls of one turn, concurrently; their result blocks."""
        run.ctx.model = rctx.upstream_model or run.ctx.model
        jobs: list[Awaitable[tuple[ToolOutcome, float]]] = []
        for call in calls:
            tool = run.tools[call["_function"]]
            refusal = self._refusal(run, tool.spec, call["input"])
            if refusal is not None:
                jobs.append(_ready(refusal))
            else:
                run.uses[tool.spec.name] += 1
                jobs.append(self._run_one(tool, call["input"], run.ctx))
        outcomes = await asyncio.gather(*jobs)
        results = []
        for call, (outcome, seconds) in zip(calls, outcomes, strict=True):
            spec = run.tools[call["_function"]].spec
            for observe in self.observers:
                observe(spec, outcome, seconds)
            if outcome.counted and not outcome.is_error and spec.usage_field:
                run.server_calls[spec.usage_field] += 1
            for url in outcome.urls:
                key = normalize_url(url)
                if key:
                    run.ctx.seen_urls.add(key)
            block = outcome.result_block
            results.append({"type": block["type"], "tool_use_id": call["id"],
                            **{k: v for k, v in block.items() if k != "type"}})
            run.model_texts[call["id"]] = (outcome.model_text, outcome.is_error)
        return results

    def _refusal(self, run: _Run, spec: ToolSpec, tool_input: Any) -> ToolOutcome | None:
        if not isinstance(tool_input, Mapping) or "_invalid_arguments" in tool_input:
            return failure(spec, "invalid_tool_input", "the arguments were not a JSON object")
        if spec.max_uses is not None and run.uses[spec.name] >= spec.max_uses:
            return failure(spec, "max_uses_exceeded",
                           f"{spec.client_name} may be used at most {spec.max_uses} times in "
                           "this request")
        if spec.requests_per_minute:
            limits = Limits(requests_per_minute=spec.requests_per_minute)
            decision = self.limiter.acquire_now(f"{run.ctx.key_id}:{spec.name}", limits, 0)
            if not decision.allowed:
                return failure(spec, "too_many_requests",
                               f"too many {spec.client_name} calls; retry in "
                               f"{decision.retry_after:.0f} s")
        return None

    async def _run_one(self, tool: Tool, tool_input: Mapping[str, Any], ctx: ToolContext
                       ) -> tuple[ToolOutcome, float]:
        started = time.perf_counter()
        try:
            outcome = await tool.run(tool_input, ctx)
        except Exception:
            log.exception("tool %s failed (%s)", tool.spec.name, ctx.request_id)
            outcome = failure(tool.spec, "unavailable", "the tool failed")
        return outcome, time.perf_counter() - started


class _Run:
    """One request's loop state: its tools, the blocks so far, the usage so far."""

    def __init__(self, body: Mapping[str, Any], client_tools: list[Any],
                 toolsets: list[Toolset], ctx: ToolContext, registry: ToolRegistry) -> None:
        self.body = body
        self.client_tools = client_tools
        self.toolsets = toolsets
        self.ctx = ctx
        self.registry = registry
        self.tools: dict[str, Tool] = {}
        for toolset in toolsets:
            for tool in toolset.tools:
                if tool.spec.name in self.tools:
                    raise InvalidRequest(f"tools: two gateway-run tools are named "
                                         f"{tool.spec.name!r}")
                self.tools[tool.spec.name] = tool
        for tool in client_tools:
            name = tool.get("name") if isinstance(tool, Mapping) else None
            if name in self.tools:
                raise InvalidRequest(f"tools: the name {name!r} is used by a client tool and "
                                     "a server tool")
        self.specs = {name: tool.spec for name, tool in self.tools.items()}
        # `mcp_tool_listing` blocks (beta mcp-client-2026-09-15) open the answer.
        self.listings: list[dict[str, Any]] = [
            block for toolset in toolsets
            for block in getattr(toolset, "listing_blocks", list)()]
        self.content: list[dict[str, Any]] = list(self.listings)
        self.model_texts: dict[str, tuple[str, bool]] = {}
        self.uses: Counter[str] = Counter()
        self.server_calls: Counter[str] = Counter(
            {"web_search_requests": 0, "web_fetch_requests": 0})
        self._usage: dict[str, int] = dict.fromkeys(_USAGE_KEYS, 0)
        self._thinking = 0
        self._functions = [{"name": spec.name, "description": spec.description,
                            "input_schema": dict(spec.input_schema)}
                           for spec in self.specs.values()]
        # Call id -> the function it called, for the calls presented in this request.
        self.call_functions: dict[str, str] = {}

    def turn_request(self, iteration: int) -> dict[str, Any]:
        body = self.body
        messages = body.get("messages")
        if isinstance(messages, list):
            turn = self.content[len(self.listings):]  # listings are not the model's
            if turn:
                messages = _with_turn(messages, turn)
            messages = rewrite_messages(messages, self._replay_text)
        request = {key: value for key, value in body.items()
                   if key not in self.registry.request_fields}
        request["messages"] = messages
        request["tools"] = [*self.client_tools, *self._functions]
        choice = body.get("tool_choice")
        if iteration and isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
            # A forced call (Claude Code's WebSearch forces web_search) was made: let the
            # model answer now, or it would call again until max_uses.
            request["tool_choice"] = {**{k: v for k, v in choice.items() if k != "name"},
                                      "type": "auto"}
        return request

    def _replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        known = self.model_texts.get(str(block.get("tool_use_id")))
        return known if known is not None else self.registry.replay_text(block)

    def present(self, block: dict[str, Any]) -> dict[str, Any]:
        """A block of a non-streamed model turn as the client sees it."""
        if block.get("type") != "tool_use":
            return block
        spec = self.specs.get(block.get("name", ""))
        if spec is None:
            return block
        presented = present_call(spec, block.get("input", {}))
        self.call_functions[presented["id"]] = spec.name
        return presented

    def gateway_calls(self, blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        calls = []
        for block in blocks:
            if block.get("type") in USE_TYPES:
                function = self.call_functions.get(block["id"]) or function_name(block)
                if function in self.tools:
                    calls.append({"id": block["id"], "input": block.get("input", {}),
                                  "_function": function})
        return calls

    @staticmethod
    def has_client_calls(blocks: Sequence[dict[str, Any]]) -> bool:
        return any(block.get("type") == "tool_use" for block in blocks)

    def add_usage(self, usage: Mapping[str, Any]) -> None:
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int):
                self._usage[key] += value
        details = usage.get("output_tokens_details")
        if isinstance(details, Mapping) and isinstance(details.get("thinking_tokens"), int):
            self._thinking += details["thinking_tokens"]

    def usage(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self._usage, "server_tool_use": dict(self.server_calls)}
        if self._thinking:
            out["output_tokens_details"] = {"thinking_tokens": self._thinking}
        return out

    async def close(self) -> None:
        toolsets, self.toolsets = self.toolsets, []
        for toolset in toolsets:
            try:
                await toolset.close()
            except Exception:
                log.exception("closing a toolset failed (%s)", self.ctx.request_id)


def _with_turn(messages: list[Any], content: list[dict[str, Any]]) -> list[Any]:
    """The conversation with this loop's blocks as the (continued) assistant turn."""
    last = messages[-1] if messages else None
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        earlier = last.get("content")
        earlier = [{"type": "text", "text": earlier}] if isinstance(earlier, str) and earlier \
            else earlier if isinstance(earlier, list) else []
        return [*messages[:-1], {**last, "content": [*earlier, *content]}]
    return [*messages, {"role": "assistant", "content": content}]


def _encode(events: list[Event]) -> bytes:
    return b"".join(encode_event(name, data) for name, data in events)


async def _ready(outcome: ToolOutcome) -> tuple[ToolOutcome, float]:
    return outcome, 0.0


async def _pings_until(task: asyncio.Future[Any], interval: float) -> AsyncIterator[bytes]:
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=interval)
        if not done:
            yield PING


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _abandon(opening: asyncio.Future[AsyncGenerator[list[Event], None]]) -> None:
    """Give up on the next model call: cancel it, or close the stream it already opened."""
    if not opening.done():
        await _cancel(opening)
    elif not opening.cancelled() and opening.exception() is None:
        with contextlib.suppress(Exception):
            await opening.result().aclose()
