"""Loopback servers for the server-tool tests: a page server (HTML, text, PDF, binary,
large, slow, redirects), a canary that records every connection (SSRF tests assert it saw
nothing), and a fake SearXNG. Each runs on its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web

HTML = """<!doctype html><html><head><title>Gateway Page</title>
<style>body { color: red }</style><script>var secret = "not text";</script></head>
<body><h1>Hello gateway</h1><p>The answer is <b>42</b>.</p>
<a href="/text">plain text</a><a href="https://example.org/next">next</a></body></html>"""
TEXT = "Plain text body.\nSecond line."


def pdf_bytes(text: str = "Hello PDF world") -> bytes:
    """A minimal one-page PDF whose text layer says `text` (Helvetica)."""
    stream = f"BT /F1 18 Tf 40 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (A PDF Title) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


class _LoopThread:
    """An event loop in a daemon thread, to run aiohttp servers for sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def serve_app(app: web.Application) -> Iterator[int]:
    """Serve an aiohttp app on 127.0.0.1; yields its port."""
    runner_box: list[web.AppRunner] = []
    thread = _LoopThread()

    async def start() -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runner_box.append(runner)
        return int(runner.addresses[0][1])

    try:
        yield thread.run(start())
    finally:
        if runner_box:
            thread.run(runner_box[0].cleanup())
        thread.stop()


class PageServer:
    """Pages for web_fetch; `hits` lists the paths requested."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.port = 0
        self.redirect_target: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits.append(path)
        if path == "/html":
            return web.Response(text=HTML, content_type="text/html")
        if path == "/text":
            return web.Response(text=TEXT, content_type="text/plain")
        if path == "/json":
            return web.Response(text='{"a": 1}', content_type="application/json")
        if path == "/pdf":
            return web.Response(body=pdf_bytes(), content_type="application/pdf")
        if path == "/binary":
            return web.Response(body=bytes(range(256)) * 4,
                                content_type="application/octet-stream")
        if path == "/large":
            return web.Response(text="x" * 300_000, content_type="text/plain")
        if path == "/large-chunked":
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(30):
                await response.write(b"y" * 10_000)
            await response.write_eof()
            return response
        if path == "/slow":
            await asyncio.sleep(3)
            return web.Response(text="late", content_type="text/plain")
        if path == "/missing":
            return web.Response(status=404, text="no")
        if path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/text" if left <= 0 else f"/redirect/{left - 1}"
            raise web.HTTPFound(target)
        if path == "/away":
            raise web.HTTPFound(self.redirect_target)
        return web.Response(status=404, text="unknown")


class Canary:
    """Listens on 127.0.0.1 (and ::1 where possible) on one port and records every
    connection it accepts: an SSRF guard that works leaves it untouched."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self.sockets: list[socket.socket] = []
        first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        first.bind(("127.0.0.1", 0))
        self.port = first.getsockname()[1]
        self.sockets.append(first)
        with contextlib.suppress(OSError):
            six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                six.bind(("::1", self.port))
                self.sockets.append(six)
            except OSError:
                six.close()
        for sock in self.sockets:
            sock.listen(16)
            sock.settimeout(0.2)
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, args=(sock,), daemon=True)
                        for sock in self.sockets]
        for thread in self.threads:
            thread.start()

    @property
    def ipv6(self) -> bool:
        return len(self.sockets) > 1

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append((str(peer[0]), int(peer[1])))
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nCANARY")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(2)
        for sock in self.sockets:
            sock.close()


class FakeSearxng:
    """`GET /search?q=...&format=json` with canned results; `queries` records the calls."""

    def __init__(self, results: Callable[[str], list[dict[str, Any]]] | None = None) -> None:
        self.queries: list[dict[str, str]] = []
        self.results = results or (lambda q: [
            {"url": f"https://searx.example/{i}", "title": f"Searx {q} {i}",
             "content": f"searx snippet {i}", "publishedDate": "2026-11-01"}
            for i in (1, 2)])
        self.status = 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/search", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if self.status != 200:
            return web.Response(status=self.status, text="down")
        body = {"query": request.query.get("q", ""), "results": self.results(
            request.query.get("q", ""))}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
