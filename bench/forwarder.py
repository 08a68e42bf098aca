"""A minimal Python forwarder: the cost floor of "a Python process in the middle".

aiohttp web server, one pooled aiohttp ClientSession, orjson. It reads the POST
/v1/messages body, parses it with orjson only to learn whether the caller asked for a
stream, posts the same bytes to the upstream's /chat/completions and relays the answer's
bytes back: whole for a plain reply, chunk by chunk (as they arrive) for a stream. No
translation, no validation, no access log: whatever the gateway costs above this is the
price of what it does, not of being written in Python. The bench fake answers the
Anthropic-format body as it would an OpenRouter one (it only looks for ``"stream":true``
and the ``bench:`` directive), so the replies are OpenRouter chunks ending in ``[DONE]``.

Run: ``python -m bench.forwarder --port 4020 --upstream http://127.0.0.1:4010/api/v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import aiohttp
import orjson
from aiohttp import web

_SESSION = web.AppKey("session", aiohttp.ClientSession)
_URL = web.AppKey("url", str)
_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer x",
            "Accept-Encoding": "identity"}


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    stream = orjson.loads(body).get("stream") is True
    session = request.app[_SESSION]
    async with session.post(request.app[_URL], data=body, headers=_HEADERS) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not stream:
            data = await upstream.read()
            return web.Response(body=data, status=upstream.status,
                                headers={"Content-Type": content_type})
        reply = web.StreamResponse(status=upstream.status,
                                   headers={"Content-Type": content_type,
                                            "Cache-Control": "no-cache"})
        # The load generator hangs up mid-stream at the end of each run: end quietly.
        with contextlib.suppress(ConnectionResetError):
            await reply.prepare(request)
            async for chunk in upstream.content.iter_any():
                await reply.write(chunk)
            await reply.write_eof()
        return reply


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def serve(host: str, port: int, upstream: str) -> None:
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=60)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                    timeout=aiohttp.ClientTimeout(total=None,
                                                                  sock_connect=10))
    app = web.Application()
    app[_SESSION] = session
    app[_URL] = upstream.rstrip("/") + "/chat/completions"
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    print(f"bench forwarder on http://{host}:{port} -> {upstream}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.forwarder", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4020)
    parser.add_argument("--upstream", default="http://127.0.0.1:4010/api/v1")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
