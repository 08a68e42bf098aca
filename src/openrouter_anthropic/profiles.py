"""Per-model facts as data: context size, output limit, reasoning, family quirks.

Loaded from OpenRouter's model list at start (see ``Profiles.update_from_model_list``) and
backed by a shipped table so the gateway works offline and before the list arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelProfile:
    slug: str
    context_length: int = 128_000
    # None: unknown, so max_tokens is passed through unclamped.
    max_output: int | None = None
    reasoning: bool = False
    # The model wants its previous reasoning text sent back as `reasoning_content`.
    replay_reasoning_content: bool = False
    # The upstream enforces `response_format: json_schema` itself.
    structured_outputs: bool = False

    @property
    def family(self) -> str:
        return family_of(self.slug)


def family_of(slug: str) -> str:
    """The vendor part of a slug, with `~` alias prefixes removed: `anthropic`, `google`..."""
    vendor = slug.lstrip("~").split("/", 1)[0].lower()
    return vendor if "/" in slug else "unknown"


# Shipped fallback: (context, max output, reasoning) for common OpenRouter slugs.
_FALLBACK: dict[str, tuple[int, int, bool]] = {
    "anthropic/claude-sonnet-4": (200_000, 64_000, True),
    "anthropic/claude-sonnet-4.5": (1_000_000, 64_000, True),
    "anthropic/claude-sonnet-4.6": (1_000_000, 64_000, True),
    "anthropic/claude-opus-4": (200_000, 32_000, True),
    "anthropic/claude-opus-4.1": (200_000, 32_000, True),
    "anthropic/claude-opus-4.5": (200_000, 64_000, True),
    "anthropic/claude-haiku-4.5": (200_000, 64_000, True),
    "anthropic/claude-3.7-sonnet": (200_000, 64_000, True),
    "anthropic/claude-3.5-haiku": (200_000, 8_192, False),
    "openai/gpt-4o": (128_000, 16_384, False),
    "openai/gpt-4o-mini": (128_000, 16_384, False),
    "openai/gpt-4.1": (1_047_576, 32_768, False),
    "openai/gpt-5": (400_000, 128_000, True),
    "openai/gpt-5-mini": (400_000, 128_000, True),
    "openai/o3": (200_000, 100_000, True),
    "openai/o4-mini": (200_000, 100_000, True),
    "google/gemini-2.5-pro": (1_048_576, 65_536, True),
    "google/gemini-2.5-flash": (1_048_576, 65_535, True),
    "deepseek/deepseek-r1": (163_840, 163_840, True),
    "deepseek/deepseek-chat": (163_840, 163_840, False),
    "deepseek/deepseek-chat-v3.1": (163_840, 163_840, True),
    "moonshotai/kimi-k2": (131_072, 131_072, False),
    "moonshotai/kimi-k2-thinking": (262_144, 262_144, True),
    "qwen/qwen3-coder": (262_144, 262_144, False),
    "z-ai/glm-4.6": (202_752, 202_752, True),
    "x-ai/grok-4": (256_000, 256_000, True),
}

# Families whose models enforce json_schema response formats (when the list does not say).
_STRUCTURED_FAMILIES = frozenset({"openai", "google"})

# Families whose reasoning must be sent back as `reasoning_content` on assistant turns.
_REASONING_CONTENT_FAMILIES = frozenset({"deepseek", "moonshotai", "z-ai"})


def _profile(
    slug: str,
    context: int,
    max_output: int | None,
    reasoning: bool,
    structured: bool | None = None,
) -> ModelProfile:
    family = family_of(slug)
    return ModelProfile(
        slug=slug,
        context_length=context,
        max_output=max_output,
        reasoning=reasoning,
        replay_reasoning_content=family in _REASONING_CONTENT_FAMILIES and reasoning,
        structured_outputs=family in _STRUCTURED_FAMILIES if structured is None else structured,
    )


class Profiles:
    def __init__(self) -> None:
        self._by_slug: dict[str, ModelProfile] = {
            slug: _profile(slug, *facts) for slug, facts in _FALLBACK.items()
        }
        self.source = "shipped table"

    def get(self, slug: str) -> ModelProfile:
        found = self._by_slug.get(slug) or self._by_slug.get(slug.split(":", 1)[0])
        if found is not None:
            return found if found.slug == slug else replace(found, slug=slug)
        family = family_of(slug)
        # Unknown models: assume reasoning may exist for families that usually have it,
        # so `thinking` is forwarded and OpenRouter decides.
        reasoning = family in ("anthropic", "openai", "google", "deepseek", "x-ai", "z-ai")
        return _profile(slug, 128_000, None, reasoning)

    def update_from_model_list(self, models: Iterable[Mapping[str, Any]]) -> int:
        """Merge OpenRouter `GET /models` entries; returns how many were taken."""
        taken = 0
        for entry in models:
            slug = entry.get("id")
            if not isinstance(slug, str):
                continue
            top = entry.get("top_provider") or {}
            context = entry.get("context_length") or top.get("context_length") or 128_000
            max_output = top.get("max_completion_tokens")
            params = entry.get("supported_parameters") or []
            reasoning = "reasoning" in params or "include_reasoning" in params
            self._by_slug[slug] = _profile(
                slug,
                int(context),
                int(max_output) if isinstance(max_output, int) and max_output > 0 else None,
                reasoning,
                "structured_outputs" in params,
            )
            taken += 1
        if taken:
            self.source = "openrouter model list"
        return taken
