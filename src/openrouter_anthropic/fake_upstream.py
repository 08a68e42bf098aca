"""A fake OpenRouter Chat Completions server for tests, the benchmark and offline trials.

It speaks OpenRouter's wire format (SSE comments, ``reasoning_details``, split tool-call
arguments, a usage chunk with empty ``choices``, mid-stream errors) and answers either from a
FIFO of scripted :class:`Reply` objects or from deterministic rules that can drive a Claude
Code session offline (see :func:`default_reply`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import posixpath
import random
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypedDict

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

JSON = dict[str, Any]
PROCESSING = b": OPENROUTER PROCESSING\n\n"
PROVIDER = "FakeProvider"


class ToolCall(TypedDict):
    id: str
    name: str
    arguments: str  # a JSON string, exactly as OpenAI-style tool calls carry it


class MidstreamError(TypedDict, total=False):
    code: int | str
    message: str
    error_type: str


@dataclass
class Reply:
    """One scripted answer; the JSON form for ``POST /_fake/script`` uses the same field names."""

    text: str | None = None
    reasoning: str | None = None
    reasoning_format: str = "anthropic-claude-v1"
    # None: derive one when the format is anthropic-claude-v1; "": send no signature.
    reasoning_signature: str | None = None
    encrypted_reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    refusal: str | None = None
    # OpenRouter `url_citation` annotations, e.g. the results of its web_search server tool:
    # [{"type": "url_citation", "url_citation": {"url", "title", "content"}}].
    annotations: list[dict[str, Any]] = field(default_factory=list)
    # faults
    status: int = 200
    error_message: str | None = None
    error_metadata: dict[str, Any] | None = None
    retry_after: float | None = None
    midstream_error: MidstreamError | None = None
    eof_without_finish: bool = False
    garbage: bool = False
    first_byte_delay: float | None = None
    hang: bool = False
    error_in_200: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reply:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown Reply fields: {sorted(unknown)}")
        calls = [_tool_call(c) for c in data.get("tool_calls") or []]
        return cls(**{**data, "tool_calls": calls})

    def signature(self) -> str | None:
        if self.reasoning_signature is not None:
            return self.reasoning_signature or None
        if self.reasoning and self.reasoning_format == "anthropic-claude-v1":
            return base64.b64encode(hashlib.sha256(self.reasoning.encode()).digest()).decode()
        return None


def _tool_call(raw: Mapping[str, Any]) -> ToolCall:
    args = raw.get("arguments", "{}")
    if not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCall(id=raw.get("id") or _new_id("call_"), name=raw["name"], arguments=args)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: JSON
    method: str = "POST"


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


# ---------------------------------------------------------------- default (unscripted) answers

_CREATE = re.compile(r"\bcreate (?:a file )?(\S+) containing (.+)", re.I | re.S)
_RUN = re.compile(r"\brun (?:the command )?(.+)", re.I | re.S)
_READ = re.compile(r"\bread (\S+) and (\S+)", re.I)
_THINK = re.compile(r"\bthink about (.+)", re.I | re.S)
_WORKDIR = re.compile(r"Working directory: (\S+)")
# "search the web for X" (a user), "Perform a web search for the query: X" (Claude Code's
# WebSearch sub-request), "Search the web for: X" (the gateway's openrouter search backend).
_SEARCH = re.compile(r"(?:search the web for|web search for the query):?\s*(.+)", re.I | re.S)
# Claude Code wraps context in these blocks; they must not trigger the rules.
_REMINDER = re.compile(r"<(system-reminder|system-message)>.*?</\1>", re.S)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str) and p)
    return ""


def _declared_tools(body: JSON) -> set[str]:
    if body.get("tool_choice") == "none":
        return set()
    tools = body.get("tools") or []
    return {t["function"]["name"] for t in tools if isinstance(t, dict) and "function" in t}


def _declares_openrouter_search(body: JSON) -> bool:
    return any(isinstance(t, dict) and t.get("type") == "openrouter:web_search"
               for t in body.get("tools") or [])


def search_reply(query: str, results: int = 3) -> Reply:
    """OpenRouter's web_search server tool as the model's answer: text + url_citations."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "q"
    annotations = [{"type": "url_citation", "url_citation": {
        "url": f"https://example.com/{slug}/{i}", "title": f"{query} - result {i}",
        "content": f"Snippet {i} about {query}.", "start_index": 0, "end_index": 1}}
        for i in range(1, results + 1)]
    return Reply(text=f"Here is what the web says about {query}.", annotations=annotations)


def _abs_path(name: str, messages: Sequence[JSON]) -> str:
    name = name.strip("\"'`").rstrip(".,;:!?")
    if name.startswith("/"):
        return name
    for msg in messages:
        found = _WORKDIR.search(_text_of(msg.get("content")))
        if found:
            return posixpath.join(found.group(1), name)
    return name


def _call(name: str, args: JSON) -> ToolCall:
    return ToolCall(id=_new_id("toolu_"), name=name, arguments=orjson.dumps(args).decode())


def example_for_schema(schema: Any, defs: Mapping[str, Any] | None = None) -> Any:
    """A minimal instance of a JSON schema: required properties only, filler values."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return example_for_schema(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], defs)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_for_schema(props.get(k, {}), defs) for k in schema.get("required", [])}
    fillers = {"string": "x", "number": 1, "integer": 1, "boolean": True, "array": [], "null": None}
    return fillers.get(kind, "x")


def default_reply(body: JSON) -> Reply:
    """The deterministic answer used when no scripted reply is queued."""
    messages: list[JSON] = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if _declares_openrouter_search(body):
        users = [m for m in messages if m.get("role") == "user"]
        found = _SEARCH.search(_text_of(users[-1].get("content"))) if users else None
        return search_reply(found.group(1).strip() if found else "anything")
    trailing_tools: list[str] = []
    for msg in reversed(messages):
        if msg.get("role") != "tool":
            break
        trailing_tools.insert(0, _text_of(msg.get("content")))
    if trailing_tools:
        return Reply(text="Done. Tool output: " + "\n".join(trailing_tools)[:300])
    fmt = body.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema", {})
        return Reply(text=orjson.dumps(example_for_schema(schema)).decode())
    users = [m for m in messages if m.get("role") == "user"]
    text = _REMINDER.sub("", _text_of(users[-1].get("content"))).strip() if users else ""
    return _rule_reply(text, messages, _declared_tools(body))


def _rule_reply(text: str, messages: Sequence[JSON], tools: set[str]) -> Reply:
    if "Write" in tools and (m := _CREATE.search(text)):
        args = {"file_path": _abs_path(m.group(1), messages), "content": m.group(2).strip()}
        return Reply(tool_calls=[_call("Write", args)])
    if "Bash" in tools and (m := _RUN.search(text)):
        return Reply(tool_calls=[_call("Bash", {"command": m.group(1).strip(),
                                                "description": "Run a command"})])
    if "Read" in tools and (m := _READ.search(text)):
        paths = [_abs_path(m.group(i), messages) for i in (1, 2)]
        return Reply(tool_calls=[_call("Read", {"file_path": p}) for p in paths])
    for search_tool in ("WebSearch", "web_search"):
        if search_tool in tools and (m := _SEARCH.search(text)):
            query = m.group(1).strip().rstrip(".")
            return Reply(tool_calls=[_call(search_tool, {"query": query})])
    if m := _THINK.search(text):
        topic = m.group(1).strip()
        return Reply(
            reasoning=f"Let me think about {topic}. I will consider it step by step, "
            "weigh the alternatives and then settle on a short answer.",
            text=f"After thinking about {topic}: it depends, but start with the simplest option.",
        )
    return Reply(text=f"Echo: {text[:200]}")


# ---------------------------------------------------------------- response shapes

def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _usage(body: JSON, reply: Reply) -> JSON:
    over = reply.usage
    prompt_json = orjson.dumps([body.get("messages"), body.get("tools")])
    prompt = int(over.get("prompt_tokens", max(1, len(prompt_json) // 4)))
    reasoning = int(over.get("reasoning_tokens", _words(reply.reasoning)))
    args = sum(len(c["arguments"]) // 4 for c in reply.tool_calls)
    completion = int(over.get("completion_tokens", max(1, _words(reply.text) + reasoning + args)))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": over.get("cost", round(prompt * 3e-6 + completion * 15e-6, 8)),
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": int(over.get("cached_tokens", 0)),
            "cache_write_tokens": int(over.get("cache_write_tokens", 0)),
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _finish(reply: Reply) -> tuple[str, str]:
    reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return reason, reply.native_finish_reason or reason


def _reasoning_details(reply: Reply) -> list[JSON]:
    details: list[JSON] = []
    if reply.reasoning:
        detail = {"type": "reasoning.text", "text": reply.reasoning,
                  "format": reply.reasoning_format, "index": 0}
        if sig := reply.signature():
            detail["signature"] = sig
        details.append(detail)
    if reply.encrypted_reasoning:
        details.append({"type": "reasoning.encrypted", "data": reply.encrypted_reasoning,
                        "format": reply.reasoning_format, "index": len(details)})
    return details


def _error_body(reply: Reply, code: int | str) -> JSON:
    message = reply.error_message or _STATUS_MESSAGES.get(code, "Provider returned error")
    metadata = reply.error_metadata or {"provider_name": PROVIDER, "raw": message}
    return {"error": {"code": code, "message": message, "metadata": metadata}}


def _midstream_error(reply: Reply) -> JSON:
    if not reply.midstream_error:
        return dict(_error_body(reply, 502)["error"])
    err = reply.midstream_error
    error: JSON = {"code": err.get("code", "server_error"),
                   "message": err.get("message", "Provider disconnected unexpectedly")}
    if "error_type" in err:
        error["metadata"] = {"error_type": err["error_type"]}
    return error


_STATUS_MESSAGES: dict[int | str, str] = {
    400: "Bad Request", 401: "No auth credentials found", 402: "Insufficient credits",
    403: "Input was flagged by moderation", 408: "Request timed out",
    429: "Rate limit exceeded", 502: "Provider returned error", 503: "No available provider",
}


def _completion(body: JSON, reply: Reply, gen_id: str) -> JSON:
    reason, native = _finish(reply)
    message: JSON = {"role": "assistant",
                     "content": reply.text if reply.text or not reply.tool_calls else None,
                     "refusal": reply.refusal, "reasoning": reply.reasoning}
    if details := _reasoning_details(reply):
        message["reasoning_details"] = details
    if reply.annotations:
        message["annotations"] = reply.annotations
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "index": i,
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for i, c in enumerate(reply.tool_calls)]
    choice: JSON = {"index": 0, "logprobs": None, "finish_reason": reason,
                    "native_finish_reason": native, "message": message}
    if reply.error_in_200:
        choice.update(finish_reason="error", native_finish_reason="error",
                      error=_error_body(reply, 502)["error"])
    return {"id": gen_id, "provider": PROVIDER, "model": body.get("model", ""),
            "object": "chat.completion", "created": int(time.time()),
            "choices": [choice], "usage": _usage(body, reply)}


def _split_words(text: str, pieces: int | None) -> list[str]:
    if pieces:
        size = -(-len(text) // pieces)
        return [text[i:i + size] for i in range(0, len(text), size)] or [text]
    return re.split(r"(?<=\s)(?=\S)", text)


def _split_args(args: str, seed: str, pieces: int | None) -> list[str]:
    """Cut the JSON at arbitrary positions (often inside strings), at least 3 fragments."""
    want = min(len(args), max(3, pieces or len(args) // 10))
    cuts = sorted(random.Random(seed).sample(range(1, len(args)), max(0, want - 1)))
    return [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]


def _deltas(reply: Reply, pieces: int | None) -> list[JSON]:
    """Every delta of a streamed answer, before the finish chunk."""
    role = {"role": "assistant"}
    out: list[JSON] = [{**role, "content": ""}]
    fmt = reply.reasoning_format
    for piece in _split_words(reply.reasoning or "", pieces) if reply.reasoning else []:
        out.append({**role, "content": "", "reasoning": piece, "reasoning_details": [
            {"type": "reasoning.text", "text": piece, "format": fmt, "index": 0}]})
    if reply.reasoning and (sig := reply.signature()):
        out.append({**role, "content": "", "reasoning": "", "reasoning_details": [
            {"type": "reasoning.text", "text": "", "signature": sig, "format": fmt, "index": 0}]})
    if reply.encrypted_reasoning:
        out.append({**role, "content": "", "reasoning_details": [
            {"type": "reasoning.encrypted", "data": reply.encrypted_reasoning, "format": fmt,
             "index": 1 if reply.reasoning else 0}]})
    if reply.refusal:
        out.append({**role, "content": "", "refusal": reply.refusal})
    out.extend({**role, "content": p} for p in _split_words(reply.text or "", pieces)
               if reply.text)
    if reply.annotations:
        out.append({**role, "content": "", "annotations": reply.annotations})
    for i, call in enumerate(reply.tool_calls):
        out.append({**role, "content": None, "tool_calls": [
            {"index": i, "id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": ""}}]})
        out.extend({**role, "content": None, "tool_calls": [
            {"index": i, "function": {"arguments": frag}}]}
            for frag in _split_args(call["arguments"], call["id"], pieces))
    return out


# ---------------------------------------------------------------- models list

_MODELS: list[tuple[str, str, int, int, str]] = [
    ("anthropic/claude-sonnet-4", "Anthropic: Claude Sonnet 4", 200000, 64000, "Claude"),
    ("anthropic/claude-3.7-sonnet", "Anthropic: Claude 3.7 Sonnet", 200000, 64000, "Claude"),
    ("openai/gpt-4o", "OpenAI: GPT-4o", 128000, 16384, "GPT"),
    ("google/gemini-2.5-pro", "Google: Gemini 2.5 Pro", 1048576, 65536, "Gemini"),
    ("deepseek/deepseek-r1", "DeepSeek: R1", 163840, 163840, "DeepSeek"),
    ("moonshotai/kimi-k2", "MoonshotAI: Kimi K2", 131072, 131072, "Other"),
    ("x-ai/grok-4", "xAI: Grok 4", 256000, 256000, "Grok"),
]
_PARAMS = ["max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
           "reasoning", "include_reasoning", "response_format", "structured_outputs"]


def models_payload() -> JSON:
    return {"data": [{
        "id": slug, "canonical_slug": slug, "name": name, "created": 1747930371,
        "description": f"{name} (fake)", "context_length": ctx,
        "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                         "output_modalities": ["text"], "tokenizer": tok,
                         "instruct_type": None},
        "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": "0",
                    "image": "0", "web_search": "0", "internal_reasoning": "0"},
        "top_provider": {"context_length": ctx, "max_completion_tokens": out,
                         "is_moderated": False},
        "per_request_limits": None, "supported_parameters": _PARAMS,
    } for slug, name, ctx, out, tok in _MODELS]}


# ---------------------------------------------------------------- the server

def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
                   ) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


class FakeOpenRouter:
    def __init__(self, *, base_path: str = "/api/v1", first_byte_delay: float = 0.0,
                 chunk_gap: float = 0.0, chunks: int | None = None) -> None:
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.first_byte_delay = first_byte_delay
        self.chunk_gap = chunk_gap
        self.chunks = chunks
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.base_url = ""
        self._queue: deque[Reply] = deque()
        self._stats = {"connections_opened": 0, "connections_closed": 0,
                       "requests_in_flight": 0, "requests_completed": 0}
        self._runner: web.AppRunner | None = None
        self._stopping = False

    def script(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._queue.clear()
        self.disconnects = 0

    def stats(self) -> JSON:
        opened, closed = self._stats["connections_opened"], self._stats["connections_closed"]
        return {**self._stats, "connections_open": opened - closed,
                "disconnects": self.disconnects}

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(f"{self.base_path}/chat/completions", self._chat)
        app.router.add_get(f"{self.base_path}/models", self._models)
        app.router.add_get("/_fake/requests", self._get_requests)
        app.router.add_delete("/_fake/requests", self._delete_requests)
        app.router.add_post("/_fake/script", self._post_script)
        app.router.add_get("/_fake/stats", self._get_stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._stopping = False
        # handler_cancellation: a client hang-up cancels the handler, which counts it.
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True,
                                     shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        self._count_connections()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockname = self._runner.addresses[0]
        self.base_url = f"http://{host}:{sockname[1]}{self.base_path}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count_connections(self) -> None:
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server
        made, lost = server.connection_made, server.connection_lost

        def on_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            self._stats["connections_opened"] += 1
            made(handler, transport)

        def on_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._stats["connections_closed"] += 1
            lost(handler, exc)

        server.connection_made = on_made  # type: ignore[method-assign]
        server.connection_lost = on_lost  # type: ignore[method-assign]

    async def _record(self, request: web.Request) -> JSON | None:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode(errors="replace")}
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = body if isinstance(body, dict) else {"_json": body}
        self.requests.append(RecordedRequest(request.path, headers, record, request.method))
        return body if isinstance(body, dict) else None

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return _json_response(models_payload())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if body is None or not isinstance(body.get("messages"), list) or not body["messages"]:
            error = {"code": 400, "message": "Input required: specify \"messages\""}
            return _json_response({"error": error}, status=400)
        reply = self._queue.popleft() if self._queue else default_reply(body)
        self._stats["requests_in_flight"] += 1
        try:
            return await self._answer(request, body, reply)
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping:
                self.disconnects += 1
            raise
        finally:
            self._stats["requests_in_flight"] -= 1
            self._stats["requests_completed"] += 1

    async def _answer(self, request: web.Request, body: JSON, reply: Reply) -> web.StreamResponse:
        if reply.hang:
            await asyncio.get_running_loop().create_future()
        if reply.status != 200:
            headers = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after else None
            return _json_response(_error_body(reply, reply.status), reply.status, headers)
        delay = self.first_byte_delay if reply.first_byte_delay is None else reply.first_byte_delay
        if body.get("stream"):
            return await self._stream(request, body, reply, delay)
        await asyncio.sleep(delay)
        if reply.garbage:
            return web.Response(body=b"<html>upstream garbage", content_type="application/json")
        return _json_response(_completion(body, reply, _new_id("gen-")))

    async def _stream(self, request: web.Request, body: JSON, reply: Reply, delay: float
                      ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(PROCESSING)
        while delay > 0:  # OpenRouter keeps idle streams alive with comment lines
            await asyncio.sleep(min(1.0, delay))
            delay -= 1.0
            if delay > 0:
                await resp.write(PROCESSING)
        gen_id, created = _new_id("gen-"), int(time.time())

        def chunk(choices: list[JSON], **extra: Any) -> bytes:
            obj = {"id": gen_id, "provider": PROVIDER, "model": body.get("model", ""),
                   "object": "chat.completion.chunk", "created": created,
                   "choices": choices, **extra}
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        def choice(delta: JSON, reason: str | None = None, native: str | None = None) -> JSON:
            return {"index": 0, "delta": delta, "finish_reason": reason,
                    "native_finish_reason": native, "logprobs": None}

        deltas = _deltas(reply, self.chunks)
        # Faults cut the answer after some content; error_in_200 fails before any content.
        if reply.midstream_error or reply.error_in_200 or reply.eof_without_finish:
            deltas = deltas[:1] if reply.error_in_200 else deltas[:max(2, len(deltas) // 2)]
        for i, delta in enumerate(deltas):
            if i and self.chunk_gap:
                await asyncio.sleep(self.chunk_gap)
            await resp.write(chunk([choice(delta)]))
            if i == 0 and reply.garbage:
                await resp.write(b"data: {this is not json\n\n")
        if reply.midstream_error or reply.error_in_200:
            error = _midstream_error(reply)
            await resp.write(chunk([choice({"content": ""}, "error", "error")], error=error))
        elif not reply.eof_without_finish:
            await resp.write(chunk([choice({}, *_finish(reply))]))
            await resp.write(chunk([], usage=_usage(body, reply)))
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _get_requests(self, request: web.Request) -> web.Response:
        return _json_response([asdict(r) for r in self.requests])

    async def _delete_requests(self, request: web.Request) -> web.Response:
        self.reset()
        return _json_response({"ok": True})

    async def _post_script(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            items = data if isinstance(data, list) else [data]
            replies = [Reply.from_json(item) for item in items]
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            return _json_response({"error": {"code": 400, "message": str(exc)}}, status=400)
        self.script(*replies)
        return _json_response({"queued": len(replies), "pending": len(self._queue)})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json_response(self.stats())


@contextlib.contextmanager
def running_fake(*, host: str = "127.0.0.1", port: int = 0, base_path: str = "/api/v1",
                 first_byte_delay: float = 0.0, chunk_gap: float = 0.0,
                 chunks: int | None = None) -> Iterator[FakeOpenRouter]:
    """Run a FakeOpenRouter on its own event loop in a daemon thread (for sync tests)."""
    fake = FakeOpenRouter(base_path=base_path, first_byte_delay=first_byte_delay,
                          chunk_gap=chunk_gap, chunks=chunks)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-openrouter", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(host, port), loop).result(10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _serve(fake: FakeOpenRouter, host: str, port: int) -> None:
    url = await fake.start(host, port)
    print(f"fake OpenRouter listening: OPENROUTER_BASE_URL={url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    parser.add_argument("--base-path", default="/api/v1")
    parser.add_argument("--first-byte-delay", type=float, default=0.0)
    parser.add_argument("--chunk-gap", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=None)
    args = parser.parse_args(argv)
    fake = FakeOpenRouter(base_path=args.base_path, first_byte_delay=args.first_byte_delay,
                          chunk_gap=args.chunk_gap, chunks=args.chunks)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(fake, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
