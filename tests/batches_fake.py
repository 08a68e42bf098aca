"""A fake OpenRouter scripted per request, for the batch tests.

Batch requests run concurrently, so a FIFO of replies cannot say which request gets which
answer. Here the prompt says it: `id=<custom_id>;` marks the request (every call is
counted per id) and directives pick the answer:

    [500] [429] [503] [400]   that HTTP error every time
    [429-once]    HTTP 429 (Retry-After 0.05 s) on the first call, then a normal answer
    [429-once=S]  the same with Retry-After S seconds
    [503-once]    HTTP 503 on the first call, then a normal answer
    [slow=S]      answer after S seconds
    [hang]        never answer (until the caller hangs up)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply, _json_response

_ID = re.compile(r"id=([A-Za-z0-9_-]+);")
_SLOW = re.compile(r"\[slow=([0-9.]+)\]")
_RETRY_AFTER = re.compile(r"\[429-once=([0-9.]+)\]")
_ALWAYS = re.compile(r"\[(500|429|503|400)\]")


def prompt(custom_id: str, *directives: str) -> str:
    return f"id={custom_id}; {' '.join(directives)} say hello".strip()


def params(custom_id: str, *directives: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt(custom_id, *directives)}],
            **extra}


def _text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


class ScriptedFake(FakeOpenRouter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}  # when each call arrived, per id
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.calls.clear()
            self.times.clear()
            self.in_flight = self.max_in_flight = 0

    def count(self, custom_id: str) -> int:
        with self._lock:
            return self.calls[custom_id]

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)

    def _reply(self, text: str, n: int) -> Reply:
        if "[hang]" in text:
            return Reply(hang=True)
        always = _ALWAYS.search(text)
        if always:
            return Reply(status=int(always.group(1)), error_message="fake upstream failure")
        if "[429-once]" in text and n == 1:
            return Reply(status=429, error_message="slow down", retry_after=0.05)
        retry_after = _RETRY_AFTER.search(text)
        if retry_after and n == 1:
            return Reply(status=429, error_message="slow down",
                         retry_after=float(retry_after.group(1)))
        if "[503-once]" in text and n == 1:
            return Reply(status=503, error_message="no provider")
        slow = _SLOW.search(text)
        return Reply(text=f"answer to {text[:40]}",
                     first_byte_delay=float(slow.group(1)) if slow else None)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if body is None or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _json_response({"error": {"code": 400, "message": "no messages"}}, 400)
        text = _text(body)
        marker = _ID.search(text)
        with self._lock:
            key = marker.group(1) if marker else "?"
            self.calls[key] += 1
            n = self.calls[key]
            self.times.setdefault(key, []).append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._stats["requests_in_flight"] += 1
        try:
            return await self._answer(request, body, self._reply(text, n))
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping:
                self.disconnects += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1
            self._stats["requests_in_flight"] -= 1
            self._stats["requests_completed"] += 1


@contextlib.contextmanager
def running_scripted_fake() -> Iterator[ScriptedFake]:
    fake = ScriptedFake()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="scripted-fake", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
