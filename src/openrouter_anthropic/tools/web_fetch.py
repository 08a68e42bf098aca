"""web_fetch (`web_fetch_20250910`, `_20260209`, `_20260309`, `_20260318`): the gateway's own
fetcher, for URLs that appeared in the conversation.

Each hop (the URL, then every redirect, at most `max_redirects`) is checked before any
connection: http/https only, the declaration's domain lists, and every resolved address
public unless the operator opened that exact `host:port` (ssrf.py); the connection then goes
to the checked address. The body is capped at `max_bytes` (`content_too_large`), the whole
fetch at `timeout_s` (`url_not_accessible`). HTML, text and PDF become text; anything else
is `unsupported_content_type`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from ..errors import InvalidRequest
from .base import ToolContext, ToolOutcome, ToolSpec, failure
from .config import WebFetchConfig
from .declarations import max_uses, optional_int, single
from .domains import DomainFilter, domain_filter
from .history import normalize_url, urls_in_text
from .registry import Declaration, StaticToolset, Toolset
from .ssrf import PinnedResolver, Refused, check_target, parse_target

log = logging.getLogger("openrouter_anthropic.tools.web_fetch")

TOOL_TYPES = frozenset({"web_fetch_20250910", "web_fetch_20260209", "web_fetch_20260309",
                        "web_fetch_20260318"})
MAX_URL = 2048
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_LINKS = 500
_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"url": {"type": "string", "description": "The URL to fetch."}},
    "required": ["url"],
}
_DESCRIPTION = ("Fetch a web page or PDF and read its text. Only URLs that appeared in the "
                "conversation (given by the user or found by an earlier search or fetch) can "
                "be fetched.")


class NotAccessible(Exception):
    pass


class TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    content_type: str | None
    body: bytes


class Fetcher:
    def __init__(self, config: WebFetchConfig) -> None:
        self.config = config
        self.allow_private: Collection[str] = frozenset(config.allow_private)

    async def fetch(self, url: str, permits: Callable[[str], bool]) -> Fetched:
        """GET with every hop checked; raises Refused, TooLarge, NotAccessible, LookupError,
        aiohttp.ClientError."""
        resolver = PinnedResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False,
                                         force_close=True)
        headers = {"User-Agent": self.config.user_agent,
                   "Accept": "text/html,text/plain;q=0.9,application/pdf;q=0.9,*/*;q=0.5"}
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            current = url
            for _ in range(self.config.max_redirects + 1):
                target = await check_target(current, self.allow_private)
                if not permits(current):
                    raise Refused(f"{target.host} is not allowed by the tool's domain lists")
                resolver.pin(target)
                async with session.get(target.url, headers=headers, allow_redirects=False
                                       ) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise NotAccessible(f"redirect {response.status} without Location")
                        current = str(target.url.join(URL(location)))
                        continue
                    if response.status >= 400:
                        raise NotAccessible(f"the server answered {response.status}")
                    body = await self._read(response)
                    return Fetched(str(target.url), response.headers.get("Content-Type"), body)
            raise NotAccessible(f"more than {self.config.max_redirects} redirects")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.config.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise TooLarge(f"{response.content_length} bytes")
        parts: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class FetchOptions:
    domains: DomainFilter
    citations: bool
    max_chars: int


class WebFetchTool:
    def __init__(self, spec: ToolSpec, fetcher: Fetcher, options: FetchOptions,
                 timeout_s: float) -> None:
        self.spec = spec
        self.fetcher = fetcher
        self.options = options
        self.timeout_s = timeout_s

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        url = tool_input.get("url")
        if not isinstance(url, str) or not url.strip():
            return failure(self.spec, "invalid_tool_input", "the url must be a non-empty string")
        url = url.strip()
        if len(url) > MAX_URL:
            return failure(self.spec, "url_too_long", f"the URL is longer than {MAX_URL} "
                           "characters")
        try:
            parse_target(url)
        except Refused as exc:
            return failure(self.spec, "url_not_allowed", str(exc))
        if normalize_url(url) not in ctx.seen_urls:
            return failure(self.spec, "url_not_in_prior_context",
                           "only URLs given by the user or found by an earlier search or "
                           "fetch can be fetched")
        if not self.options.domains.permits(url):
            return failure(self.spec, "url_not_allowed", "the URL's domain is not allowed")
        return await self._fetch(url, ctx)

    async def _fetch(self, url: str, ctx: ToolContext) -> ToolOutcome:
        try:
            async with asyncio.timeout(self.timeout_s):
                fetched = await self.fetcher.fetch(url, self.options.domains.permits)
        except Refused as exc:
            return failure(self.spec, "url_not_allowed", str(exc))
        except TooLarge as exc:
            return failure(self.spec, "content_too_large", f"the content is too large ({exc})")
        except TimeoutError:
            return failure(self.spec, "url_not_accessible",
                           f"the URL did not answer within {self.timeout_s:g} s")
        except (NotAccessible, LookupError, aiohttp.ClientError, OSError) as exc:
            log.info("web_fetch %s (%s): %s", url, ctx.request_id, exc)
            return failure(self.spec, "url_not_accessible", f"the URL could not be fetched "
                           f"({exc})")
        from .extract import Unsupported, extract, media_type  # first fetch: html.parser

        try:
            document = await asyncio.to_thread(extract, fetched.body, fetched.content_type,
                                               fetched.url)
        except Unsupported as exc:
            return failure(self.spec, "unsupported_content_type",
                           f"content of type {exc} cannot be read as text")
        text = document.text
        limit = self.options.max_chars
        if len(text) > limit:
            text = text[:limit] + f"\n[truncated: the content is longer than {limit} characters]"
        title = document.title or fetched.url
        source = {"type": "text", "media_type": "text/plain", "data": text}
        doc_block: dict[str, Any] = {"type": "document", "source": source, "title": title}
        if self.options.citations:
            doc_block["citations"] = {"enabled": True}
        block = {"type": "web_fetch_tool_result", "content": {
            "type": "web_fetch_result", "url": fetched.url, "content": doc_block,
            "retrieved_at": datetime.now(UTC).isoformat(timespec="seconds")}}
        links = [*document.links, *urls_in_text(text)][:_MAX_LINKS]
        return ToolOutcome(block, fetch_text(fetched.url, title, text, media_type(
            fetched.content_type)), urls=(fetched.url, *links))


def fetch_text(url: str, title: str | None, text: str, kind: str = "") -> str:
    head = f"Fetched {url}" + (f" ({kind})" if kind else "")
    if title and title != url:
        head += f"\nTitle: {title}"
    return f"{head}\n\n{text or '(no text content)'}"


class WebFetchProvider:
    name = "web_fetch"
    tool_types = TOOL_TYPES
    type_prefixes: tuple[str, ...] = ("web_fetch_",)
    request_fields: tuple[str, ...] = ()
    result_types = frozenset({"web_fetch_tool_result"})

    def __init__(self, config: WebFetchConfig) -> None:
        self.config = config
        self.fetcher = Fetcher(config)

    async def open(self, declarations: Sequence[Declaration], request: Mapping[str, Any],
                   ctx: ToolContext) -> Toolset:
        declaration = single(declarations, "web_fetch")
        tool, path = declaration.tool, declaration.path
        citations = tool.get("citations")
        if citations is not None and not isinstance(citations, Mapping):
            raise InvalidRequest(f"{path}.citations: Input should be an object")
        tokens = optional_int(tool, "max_content_tokens", path)
        max_chars = self.config.max_content_chars if tokens is None else min(
            tokens * 4, self.config.max_content_chars)
        spec = ToolSpec("web_fetch", _DESCRIPTION, _INPUT_SCHEMA,
                        usage_field="web_fetch_requests", max_uses=max_uses(tool, path),
                        requests_per_minute=self.config.requests_per_minute)
        options = FetchOptions(domain_filter(tool, path),
                               bool(citations and citations.get("enabled")), max_chars)
        return StaticToolset([WebFetchTool(spec, self.fetcher, options, self.config.timeout_s)])

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        content = block.get("content")
        if not isinstance(content, Mapping):
            return "Error: the fetch failed", True
        if content.get("type") != "web_fetch_result":
            return f"Error ({content.get('error_code', 'unavailable')}): the fetch failed", True
        url = str(content.get("url") or "")
        document = content.get("content")
        document = document if isinstance(document, Mapping) else {}
        source = document.get("source")
        source = source if isinstance(source, Mapping) else {}
        if source.get("type") == "text":
            text = str(source.get("data") or "")
        else:
            text = f"[a {source.get('media_type', 'binary')} document, not shown]"
        title = document.get("title")
        return fetch_text(url, title if isinstance(title, str) else None, text), False
