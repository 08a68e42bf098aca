"""web_search (`web_search_20250305`, `_20260209`, `_20260318`) with a pluggable backend.

Backends: `openrouter` (a sub-request to the upstream declaring OpenRouter's own
`openrouter:web_search` server tool; the hits come back as `url_citation` annotations),
`searxng` (its JSON API), `none` (every call answers `unavailable`).

The client gets `web_search_tool_result{content:[web_search_result{url, title,
encrypted_content, page_age}]}`; the model reads titles, URLs and snippets. The snippet
travels sealed in `encrypted_content`, so a replayed result reads the same (seal.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from ..errors import GatewayError, InvalidRequest
from ..translate.response import upstream_failure
from ..upstream import Upstream
from .base import ToolContext, ToolOutcome, ToolSpec, failure
from .config import WebSearchConfig
from .declarations import max_uses, single
from .domains import DomainFilter, domain_filter
from .registry import Declaration, StaticToolset, Toolset
from .seal import Sealer

log = logging.getLogger("openrouter_anthropic.tools.web_search")

TOOL_TYPES = frozenset({"web_search_20250305", "web_search_20260209", "web_search_20260318"})
MAX_QUERY = 500
_SNIPPET = 1500
_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "The search query."}},
    "required": ["query"],
}
_DESCRIPTION = ("Search the web. Returns the title, URL and a snippet of each result; use it "
                "for current information and cite the URLs you rely on.")


@dataclass(frozen=True, slots=True)
class Hit:
    url: str
    title: str
    snippet: str = ""
    page_age: str | None = None


@dataclass(frozen=True, slots=True)
class SearchOptions:
    domains: DomainFilter
    max_results: int
    user_location: Mapping[str, Any] | None
    model: str


class SearchUnavailable(Exception):
    pass


class SearchBackend(Protocol):
    async def search(self, query: str, options: SearchOptions) -> list[Hit]: ...


class NoSearch:
    async def search(self, query: str, options: SearchOptions) -> list[Hit]:
        raise SearchUnavailable("no web search backend is configured")


class OpenRouterSearch:
    """Asks the upstream model to search with OpenRouter's own web_search server tool."""

    def __init__(self, upstream: Upstream, model: str = "") -> None:
        self.upstream = upstream
        self.model = model

    async def search(self, query: str, options: SearchOptions) -> list[Hit]:
        parameters: dict[str, Any] = {"max_results": options.max_results}
        # OpenRouter takes one of the two lists, not both (the declaration allows one too).
        if options.domains.allowed:
            parameters["allowed_domains"] = options.domains.allowed_domains
        elif options.domains.blocked:
            parameters["excluded_domains"] = options.domains.blocked_domains
        if options.user_location:
            parameters["user_location"] = dict(options.user_location)
        body = {
            "model": self.model or options.model,
            "messages": [
                {"role": "system", "content": "You search the web with the web_search tool "
                 "and report what you found, citing every source."},
                {"role": "user", "content": f"Search the web for: {query}"},
            ],
            "tools": [{"type": "openrouter:web_search", "parameters": parameters}],
            "max_tokens": 1024,
            "usage": {"include": True},
        }
        try:
            completion = await self.upstream.complete(body, {})
        except GatewayError as exc:
            raise SearchUnavailable(exc.message) from exc
        problem = upstream_failure(completion)
        if problem is not None:
            raise SearchUnavailable(problem.message)
        return hits_from_annotations(completion)


def hits_from_annotations(completion: Mapping[str, Any]) -> list[Hit]:
    choices = completion.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], Mapping) else None
    annotations = message.get("annotations") if isinstance(message, Mapping) else None
    hits: dict[str, Hit] = {}
    for item in annotations if isinstance(annotations, list) else ():
        if not isinstance(item, Mapping) or item.get("type") != "url_citation":
            continue
        cite = item.get("url_citation")
        cite = cite if isinstance(cite, Mapping) else item
        url = cite.get("url")
        if isinstance(url, str) and url and url not in hits:
            hits[url] = Hit(url, str(cite.get("title") or url), str(cite.get("content") or ""))
    return list(hits.values())


class SearxngSearch:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def search(self, query: str, options: SearchOptions) -> list[Hit]:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, session.get(
                    self.url, params={"q": query, "format": "json"}) as response:
                if response.status != 200:
                    raise SearchUnavailable(f"searxng answered {response.status}")
                data = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise SearchUnavailable(f"searxng failed: {exc}") from exc
        results = data.get("results") if isinstance(data, Mapping) else None
        hits = []
        for item in results if isinstance(results, list) else ():
            if isinstance(item, Mapping) and isinstance(item.get("url"), str):
                age = item.get("publishedDate")
                hits.append(Hit(item["url"], str(item.get("title") or item["url"]),
                                str(item.get("content") or ""),
                                str(age) if isinstance(age, str) and age else None))
        return hits


def make_backend(config: WebSearchConfig, upstream: Upstream) -> SearchBackend:
    if config.backend == "searxng":
        return SearxngSearch(config.searxng_url, config.timeout_s)
    if config.backend == "openrouter":
        return OpenRouterSearch(upstream, config.model)
    return NoSearch()


class WebSearchTool:
    def __init__(self, spec: ToolSpec, backend: SearchBackend, options: SearchOptions,
                 sealer: Sealer, timeout_s: float) -> None:
        self.spec = spec
        self.backend = backend
        self.options = options
        self.sealer = sealer
        self.timeout_s = timeout_s

    async def run(self, tool_input: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        query = tool_input.get("query")
        if not isinstance(query, str) or not query.strip():
            return failure(self.spec, "invalid_tool_input", "the query must be a non-empty "
                           "string")
        if len(query) > MAX_QUERY:
            return failure(self.spec, "query_too_long",
                           f"the query is longer than {MAX_QUERY} characters")
        if isinstance(self.backend, NoSearch):  # search is off by configuration: no warning
            return failure(self.spec, "unavailable", "web search is not available on this "
                           "gateway")
        options = self.options
        if not options.model:
            options = SearchOptions(options.domains, options.max_results,
                                    options.user_location, ctx.model)
        try:
            async with asyncio.timeout(self.timeout_s):
                found = await self.backend.search(query.strip(), options)
        except (SearchUnavailable, TimeoutError) as exc:
            log.warning("web search failed (%s): %s", ctx.request_id, exc or "timeout")
            return failure(self.spec, "unavailable", "web search is unavailable right now")
        hits = [hit for hit in found if options.domains.permits(hit.url)][:options.max_results]
        content = [{"type": "web_search_result", "url": hit.url, "title": hit.title,
                    "encrypted_content": self.sealer.seal(_payload(hit)),
                    "page_age": hit.page_age} for hit in hits]
        return ToolOutcome({"type": "web_search_tool_result", "content": content},
                           results_text(hits, query), urls=tuple(hit.url for hit in hits))


def _payload(hit: Hit) -> dict[str, Any]:
    return {"url": hit.url, "snippet": hit.snippet[:_SNIPPET], "page_age": hit.page_age}


def results_text(hits: Sequence[Hit], query: str | None = None) -> str:
    head = f'Web search results for "{query}":' if query else "Web search results:"
    if not hits:
        return f"{head}\n(no results)"
    lines = [head]
    for number, hit in enumerate(hits, 1):
        lines.append(f"\n{number}. {hit.title}\n   URL: {hit.url}")
        if hit.page_age:
            lines.append(f"   Published: {hit.page_age}")
        if hit.snippet:
            lines.append("   " + hit.snippet[:_SNIPPET].replace("\n", " "))
    return "\n".join(lines)


class WebSearchProvider:
    name = "web_search"
    tool_types = TOOL_TYPES
    type_prefixes: tuple[str, ...] = ("web_search_",)
    request_fields: tuple[str, ...] = ()
    result_types = frozenset({"web_search_tool_result"})

    def __init__(self, config: WebSearchConfig, backend: SearchBackend, sealer: Sealer) -> None:
        self.config = config
        self.backend = backend
        self.sealer = sealer

    async def open(self, declarations: Sequence[Declaration], request: Mapping[str, Any],
                   ctx: ToolContext) -> Toolset:
        declaration = single(declarations, "web_search")
        tool, path = declaration.tool, declaration.path
        location = tool.get("user_location")
        if location is not None and not isinstance(location, Mapping):
            raise InvalidRequest(f"{path}.user_location: Input should be an object")
        spec = ToolSpec("web_search", _DESCRIPTION, _INPUT_SCHEMA,
                        usage_field="web_search_requests", max_uses=max_uses(tool, path),
                        requests_per_minute=self.config.requests_per_minute)
        options = SearchOptions(domain_filter(tool, path), self.config.max_results, location, "")
        return StaticToolset([WebSearchTool(spec, self.backend, options, self.sealer,
                                            self.config.timeout_s)])

    def replay_text(self, block: Mapping[str, Any]) -> tuple[str, bool]:
        content = block.get("content")
        if isinstance(content, Mapping):
            code = content.get("error_code", "unavailable")
            return f"Error ({code}): the web search failed", True
        hits = []
        for item in content if isinstance(content, list) else ():
            if not isinstance(item, Mapping) or not isinstance(item.get("url"), str):
                continue
            sealed = self.sealer.unseal(item.get("encrypted_content"))
            if sealed is not None and sealed.get("url") == item["url"]:
                hits.append(Hit(item["url"], str(item.get("title") or item["url"]),
                                str(sealed.get("snippet") or ""), sealed.get("page_age")))
            else:  # not ours, or tampered with: only what the client shows anyway
                hits.append(Hit(item["url"], str(item.get("title") or item["url"])))
        return results_text(hits), False
