"""Redaction of secrets (API keys, bearer tokens) from text that leaves the gateway:
error messages, logs and the debug error store."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

__all__ = ["REDACTED", "SENSITIVE_KEYS", "make_scrubber", "scrub"]

REDACTED = "[REDACTED]"

# Tokens that look like credentials whoever they belong to.
_TOKEN_PATTERNS = (
    # "Bearer <token>" (RFC 6750 b64token, any case, token of 8+ characters so that
    # "the bearer of bad news" survives); the word "Bearer" itself is kept.
    r"(?P<bearer>\b[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+)[A-Za-z0-9._~+/\-]{8,}=*",
    # OpenRouter keys (sk-or-v1-<hex>), however short.
    r"\bsk-or-[A-Za-z0-9._\-]+",
    # Anthropic / OpenAI style keys: sk-ant-..., sk-proj-..., sk-<long>.
    r"\bsk-[A-Za-z0-9_\-]{16,}",
)

# detail keys whose values are credentials, redacted whole (compared lower-cased, "-"->"_").
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",
        "apikey",
        "openrouter_api_key",
        "anthropic_api_key",
        "access_token",
        "refresh_token",
        "secret",
        "password",
        "cookie",
        "set_cookie",
    }
)


def _replacement(match: re.Match[str]) -> str:
    bearer = match.group("bearer")
    return bearer + REDACTED if bearer else REDACTED


@lru_cache(maxsize=16)
def _compile(secrets: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a secret that contains another is replaced whole.
    literal = [re.escape(s) for s in sorted(secrets, key=len, reverse=True)]
    return re.compile("|".join([*literal, *_TOKEN_PATTERNS]))


def normalise_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({s for s in secrets if s}))


def make_scrubber(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """A ``str -> str`` function redacting ``secrets`` and credential-looking tokens."""
    pattern = _compile(normalise_secrets(secrets))

    def scrub_text(text: str) -> str:
        return pattern.sub(_replacement, text)

    return scrub_text


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret in ``secrets`` and every ``Bearer <token>`` / ``sk-or-...``
    / ``sk-...``-looking key replaced by ``[REDACTED]``. Empty secrets are ignored."""
    return _compile(normalise_secrets(secrets)).sub(_replacement, text)
