"""A lean fake OpenRouter for the benchmark baseline: raw asyncio + uvloop + httptools.

The project's own fake (`openrouter-anthropic fake-upstream`) is built for tests: it records
every request (memory grows with the run), parses each body, runs regex rules and builds
every chunk with `orjson` per request. Fine for tests, too costly for a baseline that must
not be the bottleneck. This one answers canned, pre-encoded bodies in OpenRouter's wire
format: comment line, role chunk, content chunks, finish chunk, usage chunk with
``choices: []``, ``data: [DONE]``.

Per-request knobs travel in the user text as ``bench:chunks=N;gap=S;delay=S`` (the gateway
forwards it untouched), so one fake serves every phase; the command-line values are the
defaults. Run: ``python -m bench.fake --port 4010 [--chunks N] [--chunk-gap S]
[--first-byte-delay S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import httptools
import orjson

PROCESSING = b": OPENROUTER PROCESSING\n\n"
_DIRECTIVE = re.compile(rb"bench:chunks=(\d+);gap=([0-9.]+);delay=([0-9.]+)")
_CHAT_PATH = b"/api/v1/chat/completions"
_GEN_ID = "gen-bench0000000000000000000"
_MODEL = "anthropic/claude-sonnet-4"
_USAGE = {
    "prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0001,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")


@dataclass(frozen=True, slots=True)
class Knobs:
    chunks: int
    gap: float
    delay: float


def reply_pieces(chunks: int) -> list[str]:
    """Exactly `chunks` content pieces: 'Echo: tok1', ' tok2', ... (about a token each)."""
    count = max(chunks, 1)
    return ["Echo: tok1", *(f" tok{i}" for i in range(2, count + 1))]


def reply_text(chunks: int) -> str:
    return "".join(reply_pieces(chunks))


def _usage(completion: int) -> dict[str, object]:
    return {**_USAGE, "completion_tokens": completion, "total_tokens": 12 + completion}


def _http_json(body: bytes) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


@lru_cache(maxsize=64)
def completion_response(chunks: int) -> bytes:
    text = reply_text(chunks)
    message = {"role": "assistant", "content": text, "refusal": None, "reasoning": None}
    choice = {"index": 0, "logprobs": None, "finish_reason": "stop",
              "native_finish_reason": "stop", "message": message}
    body = {"id": _GEN_ID, "provider": "FakeProvider", "model": _MODEL,
            "object": "chat.completion", "created": 1700000000, "choices": [choice],
            "usage": _usage(len(text.split()))}
    return _http_json(orjson.dumps(body))


def _sse(choices: list[dict[str, object]], **extra: object) -> bytes:
    obj = {"id": _GEN_ID, "provider": "FakeProvider", "model": _MODEL,
           "object": "chat.completion.chunk", "created": 1700000000, "choices": choices,
           **extra}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _choice(delta: dict[str, object], reason: str | None = None) -> dict[str, object]:
    return {"index": 0, "delta": delta, "finish_reason": reason,
            "native_finish_reason": reason, "logprobs": None}


def _chunked(frame: bytes) -> bytes:
    return f"{len(frame):x}\r\n".encode() + frame + b"\r\n"


@lru_cache(maxsize=64)
def stream_frames(chunks: int) -> tuple[bytes, ...]:
    """HTTP head + every SSE frame, each already in chunked transfer encoding."""
    text = reply_text(chunks)
    role = {"role": "assistant"}
    frames = [PROCESSING, _sse([_choice({**role, "content": ""})])]
    frames += [_sse([_choice({**role, "content": p})]) for p in reply_pieces(chunks)]
    frames.append(_sse([_choice({}, "stop")]))
    frames.append(_sse([], usage=_usage(len(text.split()))))
    frames.append(b"data: [DONE]\n\n")
    return (_STREAM_HEAD, *(_chunked(f) for f in frames), b"0\r\n\r\n")


@lru_cache(maxsize=64)
def whole_stream(chunks: int) -> bytes:
    return b"".join(stream_frames(chunks))


class Counters:
    connections = 0  # accepted; a pooling client opens few
    requests = 0


class FakeProtocol(asyncio.Protocol):
    def __init__(self, defaults: Knobs) -> None:
        self.defaults = defaults
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        Counters.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        if self.parser.get_method() == b"POST" and self.url == _CHAT_PATH:
            Counters.requests += 1
            self._chat(b"".join(self.body))
        elif self.url == b"/_bench/stats":
            stats = {"connections": Counters.connections, "requests": Counters.requests}
            self.transport.write(_http_json(orjson.dumps(stats)))
        else:
            self.transport.write(_http_json(b'{"data":[]}'))

    def _knobs(self, body: bytes) -> Knobs:
        found = _DIRECTIVE.search(body)
        if found is None:
            return self.defaults
        return Knobs(int(found[1]), float(found[2]), float(found[3]))

    def _chat(self, body: bytes) -> None:
        knobs = self._knobs(body)
        stream = b'"stream":true' in body or b'"stream": true' in body
        assert self.transport is not None
        if knobs.delay <= 0 and (not stream or knobs.gap <= 0):
            if stream:  # no gap: the whole stream in one write
                self.transport.write(whole_stream(knobs.chunks))
            else:
                self.transport.write(completion_response(knobs.chunks))
            return
        self.busy = asyncio.ensure_future(self._slow(knobs, stream))

    async def _slow(self, knobs: Knobs, stream: bool) -> None:
        transport = self.transport
        assert transport is not None
        if not stream:
            await asyncio.sleep(knobs.delay)
            transport.write(completion_response(knobs.chunks))
            return
        frames = stream_frames(knobs.chunks)
        transport.write(frames[0] + frames[1])  # head + processing comment at once
        if knobs.delay > 0:
            await asyncio.sleep(knobs.delay)
        contents = len(frames) - 7  # head, comment, role, finish, usage, DONE, terminator
        for i, frame in enumerate(frames[2:]):
            if knobs.gap > 0 and 1 < i <= contents:  # a gap before each further token
                await asyncio.sleep(knobs.gap)
            if transport.is_closing():
                return
            transport.write(frame)


async def serve(host: str, port: int, defaults: Knobs) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeProtocol(defaults), host, port,
                                      backlog=4096, reuse_address=True)
    print(f"bench fake OpenRouter on http://{host}:{port}/api/v1", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--chunk-gap", type=float, default=0.0)
    parser.add_argument("--first-byte-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    defaults = Knobs(args.chunks, args.chunk_gap, args.first_byte_delay)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, defaults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
