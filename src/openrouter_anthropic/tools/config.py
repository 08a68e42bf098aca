"""The `server_tools` settings section, typed.

```yaml
server_tools:
  max_iterations: 10          # model calls per request before `pause_turn`
  secret: "..."               # HMAC key of encrypted_content (default: derived, see below)
  web_search: {backend: openrouter | searxng | none, searxng_url, max_results, timeout_s,
               model, requests_per_minute, enabled}
  web_fetch: {allow_private: ["host:port"], timeout_s, max_bytes, max_redirects,
              max_content_chars, user_agent, requests_per_minute, enabled}
```

Other keys of the section (code_execution, ...) belong to the tools that read them and are
left alone here; unknown keys inside `web_search` / `web_fetch` are refused (typos).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..settings import SettingsError

_BACKENDS = ("openrouter", "searxng", "none")
C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class WebSearchConfig:
    enabled: bool = True
    backend: str = "openrouter"
    searxng_url: str = ""  # the search endpoint itself, e.g. http://127.0.0.1:8888/search
    max_results: int = 5
    timeout_s: float = 30.0
    model: str = ""  # the openrouter backend's sub-request model; "": the request's model
    requests_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class WebFetchConfig:
    enabled: bool = True
    # Exact "host:port" pairs (as written in URLs) that may be fetched although they resolve
    # to non-public addresses: an operator's intranet page, a test server on loopback.
    allow_private: tuple[str, ...] = ()
    timeout_s: float = 20.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    # Text handed to the model per fetch when the declaration sets no max_content_tokens.
    max_content_chars: int = 400_000
    user_agent: str = "openrouter-anthropic-server web_fetch"
    requests_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class ServerToolsConfig:
    max_iterations: int = 10
    secret: bytes = b""
    web_search: WebSearchConfig = field(default_factory=WebSearchConfig)
    web_fetch: WebFetchConfig = field(default_factory=WebFetchConfig)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], upstream_key: str = "") -> ServerToolsConfig:
        if not isinstance(raw, Mapping):
            raise SettingsError("server_tools must be a mapping")
        iterations = _number(raw.get("max_iterations", 10), "server_tools.max_iterations", int)
        if iterations < 1:
            raise SettingsError("server_tools.max_iterations must be 1 or more")
        search = _section(WebSearchConfig, raw.get("web_search"), "server_tools.web_search")
        if search.backend not in _BACKENDS:
            raise SettingsError(
                f"server_tools.web_search.backend must be one of {', '.join(_BACKENDS)}, "
                f"got {search.backend!r}")
        if search.backend == "searxng" and not search.searxng_url.startswith(("http://",
                                                                              "https://")):
            raise SettingsError("server_tools.web_search.searxng_url must be an http(s) URL "
                                "when the backend is searxng")
        fetch = _section(WebFetchConfig, raw.get("web_fetch"), "server_tools.web_fetch")
        for entry in fetch.allow_private:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError("server_tools.web_fetch.allow_private entries are "
                                    f"'host:port', got {entry!r}")
        return cls(iterations, _secret(raw.get("secret"), upstream_key), search, fetch)


def _secret(value: Any, upstream_key: str) -> bytes:
    if isinstance(value, str) and value:
        return value.encode()
    if value not in (None, ""):
        raise SettingsError("server_tools.secret must be a string")
    if upstream_key:
        # Every worker and restart derives the same key, so sealed results stay verifiable.
        return hmac.new(upstream_key.encode(), b"openrouter-anthropic server tool seal",
                        hashlib.sha256).digest()
    return secrets.token_bytes(32)


def _section(kind: type[C], raw: Any, path: str) -> C:
    if raw is None:
        return kind()
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{path} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    defaults = kind()
    for name, value in raw.items():
        default = getattr(defaults, name)
        where = f"{path}.{name}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise SettingsError(f"{where} must be true or false")
            values[name] = value
        elif isinstance(default, int | float):
            values[name] = _number(value, where, type(default))
            if values[name] < 0 or (name.endswith(("timeout_s", "max_bytes")) and
                                    values[name] == 0):
                raise SettingsError(f"{where} must be positive")
        elif isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{where} must be a list of strings")
            values[name] = tuple(v.strip().lower() for v in value)
        else:
            if not isinstance(value, str):
                raise SettingsError(f"{where} must be a string")
            values[name] = value
    return kind(**values)


def _number(value: Any, where: str, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(f"{where} must be a number")
    try:
        return kind(value)
    except ValueError as exc:
        raise SettingsError(f"{where} must be a number, got {value!r}") from exc
