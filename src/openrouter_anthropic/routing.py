"""Model routing: the name a client asks for -> the OpenRouter model that answers it.

A pure lookup over data loaded at start. Rules, in order: configured aliases (which may
override everything, ``big``/``small`` included), an OpenRouter slug (contains ``/``) passes
through, then any Claude-looking name: ``haiku`` -> small, everything else -> big.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import NotFound

# Claude model ids that clients (Claude Code, SDK defaults) send; listed by /v1/models so
# Claude Code's gateway model discovery offers them.
KNOWN_CLAUDE_IDS: tuple[str, ...] = (
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-1",
    "claude-opus-4-1-20250805",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest",
    "claude-3-5-haiku-latest",
)

_LONG_CONTEXT_SUFFIX = "[1m]"


@dataclass(frozen=True, slots=True)
class Route:
    requested: str  # echoed back to the client as `model`
    upstream: str  # OpenRouter slug
    via: str  # "alias", "big", "small" or "slug": how the name was resolved
    fallbacks: tuple[str, ...] = ()  # tried in order when `upstream` fails retryably


class Router:
    def __init__(
        self,
        big: str,
        small: str,
        aliases: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.big = big
        self.small = small
        self.fallbacks = {name: tuple(models) for name, models in (fallbacks or {}).items()}
        table = {"big": big, "small": small}
        for name, target in (aliases or {}).items():
            table[name] = {"big": big, "small": small}.get(target, target)
        self.aliases: dict[str, str] = table

    def resolve(self, requested: str) -> Route:
        route = self._resolve(requested)
        for key in (requested, route.via, route.upstream):
            if key in self.fallbacks:
                chain = tuple(m for m in self.fallbacks[key] if m != route.upstream)
                return Route(route.requested, route.upstream, route.via, chain)
        return route

    def _resolve(self, requested: str) -> Route:
        name = requested.strip()
        if name.endswith(_LONG_CONTEXT_SUFFIX):
            name = name[: -len(_LONG_CONTEXT_SUFFIX)]
        target = self.aliases.get(name)
        if target is not None:
            via = name if name in ("big", "small") else "alias"
            return Route(requested, target, via)
        if "/" in name:
            return Route(requested, name, "slug")
        lowered = name.lower()
        if "haiku" in lowered:
            return Route(requested, self.small, "small")
        if "opus" in lowered or "sonnet" in lowered or lowered.startswith(("claude", "anthropic")):
            return Route(requested, self.big, "big")
        names = ", ".join(sorted(self.aliases))
        raise NotFound(
            f"model: unknown model {requested!r}. Use an alias ({names}), a Claude model name "
            "(opus/sonnet route to big, haiku to small) or an OpenRouter slug such as "
            "'openai/gpt-4o'"
        )

    def listed_ids(self) -> list[str]:
        """Every name /v1/models lists: aliases first, then the Claude ids."""
        ids = list(self.aliases)
        ids.extend(i for i in KNOWN_CLAUDE_IDS if i not in self.aliases)
        return ids
