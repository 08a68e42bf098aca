"""OpenRouter (or any OpenAI-compatible server) over pooled aiohttp connections.

aiohttp is the client because it sets the throughput ceiling here: measured on this
machine ~6,000 calls/s against ~1,000 for httpx (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from .. import __version__
from ..errors import UpstreamError, from_upstream
from ..redact import make_scrubber
from ..translate.sse import SSEComment, SSEDecoder


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "timeout_error"
    retryable = True


class UpstreamUnreachable(UpstreamError):
    status = 500
    error_type = "api_error"
    retryable = True


class UpstreamProtocolError(UpstreamError):
    status = 500
    error_type = "api_error"


class OpenRouterStream:
    """An open streaming answer. `read()` may be cancelled (by a ping timer) at any await
    without losing data: bytes stay in aiohttp's buffer until the next call."""

    def __init__(self, response: aiohttp.ClientResponse, scrub: Callable[[str], str]) -> None:
        self._response = response
        self._scrub = scrub
        self._decoder = SSEDecoder()
        self._ended = False

    async def read(self) -> list[dict[str, Any] | None] | None:
        """The next decoded items (a chunk, or None for a keep-alive comment); None at end."""
        if self._ended:
            return None
        try:
            raw = await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(f"the upstream connection failed: {exc}") from exc
        items = self._decoder.feed(raw) if raw else self._decoder.flush()
        out: list[dict[str, Any] | None] = []
        for item in items:
            if isinstance(item, SSEComment):
                out.append(None)
                continue
            if item.data == "[DONE]":
                self._ended = True
                break
            try:
                chunk = orjson.loads(item.data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamProtocolError(
                    f"the upstream sent invalid JSON in its stream: {item.data[:200]!r}"
                ) from exc
            if isinstance(chunk, dict):
                out.append(_scrubbed(chunk, self._scrub) if _carries_error(chunk) else chunk)
        if not raw:
            self._ended = True
        if self._ended and not out:
            return None
        return out

    async def close(self) -> None:
        # Closing (not releasing) drops the connection, which tells the upstream to stop
        # generating when the client went away mid-stream.
        self._response.close()


class OpenRouterUpstream:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        app_url: str = "",
        app_title: str = "",
        connect_timeout: float = 10.0,
        first_byte_timeout: float = 600.0,
        max_connections: int = 512,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"openrouter-anthropic-server/{__version__}",
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if app_url:
            self._headers["HTTP-Referer"] = app_url
        if app_title:
            self._headers["X-Title"] = app_title
        self._connect_timeout = connect_timeout
        self._first_byte_timeout = first_byte_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Some providers echo the credential in their error text: it must not reach clients.
        self._scrub = make_scrubber([api_key])

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                auto_decompress=True,
            )
        return self._session

    async def _post(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        url = f"{self.base_url}/chat/completions"
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                response = await self.session.post(
                    url, data=orjson.dumps(body), headers={**self._headers, **headers}
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"the upstream did not answer within {self._first_byte_timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(f"cannot reach the upstream at {url}: {exc}") from exc
        if response.status != 200:
            try:
                await _raise_for_status(response, self._scrub)
            finally:
                response.release()
        return response

    async def complete(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        response = await self._post(body, headers)
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                raw = await response.read()
        except TimeoutError as exc:
            response.close()
            raise UpstreamTimeout("the upstream answer did not complete in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(f"the upstream connection failed: {exc}") from exc
        finally:
            response.release()
        try:
            # OpenRouter may pad a slow non-streaming answer with keep-alive whitespace.
            data = orjson.loads(raw.strip() or b"null")
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                f"the upstream answered with invalid JSON: {raw[:200]!r}"
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamProtocolError("the upstream answered with an empty body")
        return _scrubbed(data, self._scrub) if _carries_error(data) else data

    async def open_stream(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> OpenRouterStream:
        response = await self._post(body, headers)
        return OpenRouterStream(response, self._scrub)

    async def list_models(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(self._connect_timeout + 10):
            async with self.session.get(f"{self.base_url}/models",
                                        headers=self._headers) as response:
                if response.status != 200:
                    await _raise_for_status(response, self._scrub)
                data = orjson.loads(await response.read())
        models = data.get("data") if isinstance(data, dict) else None
        return [m for m in models or [] if isinstance(m, dict)]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _raise_for_status(
    response: aiohttp.ClientResponse, scrub: Callable[[str], str]
) -> None:
    try:
        raw = await response.read()
        payload: Any = orjson.loads(raw) if raw else None
    except (orjson.JSONDecodeError, aiohttp.ClientError):
        payload = None
    headers = {k.lower(): v for k, v in response.headers.items()}
    error = from_upstream(response.status, payload, headers)
    error.message = scrub(error.message)
    error.args = (error.message,)
    raise error


def _carries_error(chunk: dict[str, Any]) -> bool:
    if "error" in chunk:
        return True
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return isinstance(choices[0], dict) and "error" in choices[0]


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with every string scrubbed (only error-carrying chunks come here)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, scrub) for v in value]
    return value
