"""Small HTTP/1.1 clients on raw sockets + httptools (no client library overhead to subtract).

- `sequential`: one keep-alive connection, N requests one after the other; per request the
  total time and the time to the first content token (a marker seen in the body).
- `concurrent_streams`: N streaming requests opened at once (memory under load).
- `python_load`: a closed-loop load generator, the fallback when wrk is not installed.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools


def http_request(port: int, path: str, body: bytes, headers: dict[str, str],
                 close: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class Sample:
    status: int
    total: float
    first: float | None  # seconds to the first content token, if a marker was given
    size: int


@dataclass
class _Collector:
    marker: bytes | None
    started: float = 0.0
    first_at: float | None = None
    done: bool = False
    size: int = 0
    tail: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    keep_body: bool = False

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.keep_body:
            self.chunks.append(body)
        if self.marker is not None and self.first_at is None:
            if self.marker in self.tail + body:
                self.first_at = time.perf_counter()
            self.tail = body[-len(self.marker):]

    def on_message_complete(self) -> None:
        self.done = True


class BlockingClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, raw: bytes, marker: bytes | None = None,
             keep_body: bool = False) -> tuple[Sample, bytes]:
        collector = _Collector(marker, keep_body=keep_body)
        parser = httptools.HttpResponseParser(collector)
        collector.started = started = time.perf_counter()
        self.sock.sendall(raw)
        while not collector.done:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed the connection mid-response")
            parser.feed_data(data)
        total = time.perf_counter() - started
        first = None if collector.first_at is None else collector.first_at - started
        sample = Sample(parser.get_status_code(), total, first, collector.size)
        return sample, b"".join(collector.chunks)

    def close(self) -> None:
        self.sock.close()


def sequential(port: int, raw: bytes, count: int, max_seconds: float,
               marker: bytes | None = None) -> list[Sample]:
    """Up to `count` requests in a row on one connection, stopping after `max_seconds`."""
    client = BlockingClient(port)
    samples: list[Sample] = []
    deadline = time.perf_counter() + max_seconds
    try:
        for _ in range(count):
            samples.append(client.call(raw, marker)[0])
            if time.perf_counter() > deadline:
                break
    finally:
        client.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- concurrency (asyncio)

async def _one_stream(port: int, raw: bytes, done_marker: bytes, limit_s: float) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(limit_s):
            data = await reader.read()  # Connection: close -> read to EOF
        return data.startswith(b"HTTP/1.1 200") and done_marker in data
    finally:
        writer.close()


async def concurrent_streams(port: int, raw: bytes, count: int, done_marker: bytes,
                             limit_s: float, sample: Callable[[], None],
                             every: float = 0.02) -> int:
    """Open `count` streams at once; call `sample()` every `every` s until all end.
    Returns how many completed with a 200 and `done_marker`."""
    tasks = [asyncio.ensure_future(_one_stream(port, raw, done_marker, limit_s))
             for _ in range(count)]
    while not all(t.done() for t in tasks):
        sample()
        await asyncio.sleep(every)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(1 for r in results if r is True)


# ---------------------------------------------------------------- fallback load generator

@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    non_200: int = 0
    latencies: list[float] = field(default_factory=list)


class _LoadConn(asyncio.Protocol):
    def __init__(self, raw: bytes, deadline: float, result: LoadResult,
                 finished: asyncio.Future[None]) -> None:
        self.raw, self.deadline, self.result, self.finished = raw, deadline, result, finished
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.transport.write(self.raw)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.result.errors += 1
            self._finish()

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        self.result.requests += 1
        self.result.latencies.append(now - self.started)
        if self.parser.get_status_code() != 200:
            self.result.non_200 += 1
        if now < self.deadline:
            self._send()
        else:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.result.errors += 1
            self.finished.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)


async def python_load(port: int, raw: bytes, connections: int, duration: float) -> LoadResult:
    """Closed loop: each connection sends the next request when the previous one ends."""
    loop = asyncio.get_running_loop()
    result = LoadResult()
    deadline = time.perf_counter() + duration
    waits: list[asyncio.Future[None]] = []
    for _ in range(connections):
        finished: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(
            lambda f=finished: _LoadConn(raw, deadline, result, f), "127.0.0.1", port)  # type: ignore[misc]
        waits.append(finished)
    await asyncio.wait_for(asyncio.gather(*waits), duration + 30)
    return result
