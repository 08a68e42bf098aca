"""One Settings object, built once at start from an optional YAML file and the environment.

Precedence: command-line flags > environment variables > config file > defaults. Every
field can be set in the file under its own name, or in the environment under its name in
upper case (``big_model`` <- ``BIG_MODEL``). Nothing reads the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


# Generic names (HOST is set by some shells) get a prefixed environment variable.
_ENV_NAMES = {
    "host": "OPENROUTER_ANTHROPIC_HOST",
    "port": "OPENROUTER_ANTHROPIC_PORT",
    "provider": "OPENROUTER_PROVIDER",
    "aliases": "MODEL_ALIASES",
    "log_level": "OPENROUTER_ANTHROPIC_LOG_LEVEL",
    "access_log": "OPENROUTER_ANTHROPIC_ACCESS_LOG",
}


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    openrouter_api_key: str = ""
    openrouter_base_url: str = DEFAULT_BASE_URL
    big_model: str = "anthropic/claude-sonnet-4"
    small_model: str = "anthropic/claude-3.7-sonnet"
    # Extra or overriding aliases: requested model name -> OpenRouter slug.
    aliases: dict[str, str] = field(default_factory=dict)
    # Fallback models per alias, Claude family (`big`/`small`) or slug, tried in order.
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 4000
    # Client keys accepted by the gateway (x-api-key or Bearer). Empty: no key is checked.
    proxy_api_keys: tuple[str, ...] = ()
    # Guards /debug/* and /admin/* (and /metrics when set). Empty: those are off.
    admin_api_key: str = ""
    debug_endpoints: bool = False
    error_store_size: int = 500
    # Browser origins allowed by CORS ("*" for any). Empty: CORS off.
    cors_origins: tuple[str, ...] = ()
    # Per client key; 0 = unlimited. key_rate_limits overrides them for given keys:
    # {<key>: {requests_per_minute: N, tokens_per_minute: M}}.
    rate_limit_requests_per_minute: int = 0
    rate_limit_tokens_per_minute: int = 0
    key_rate_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # Redis shares rate limits between instances; empty: in-memory, per process.
    redis_url: str = ""
    # Claude Code's first system block varies per conversation and defeats prefix caching.
    keep_attribution_block: bool = False
    # OpenRouter app attribution (https://openrouter.ai/docs/api-reference/overview).
    app_url: str = "https://github.com/openrouter-anthropic-server"
    app_title: str = "openrouter-anthropic-server"
    # OpenRouter provider routing preferences, sent as the request's `provider` object.
    provider: dict[str, Any] = field(default_factory=dict)
    # Upstream retries per model on 429/5xx/connection errors, before the first byte.
    max_retries: int = 2
    retry_base_delay: float = 0.5
    retry_max_delay: float = 8.0
    retry_max_wait: float = 20.0
    connect_timeout: float = 10.0
    # Seconds to wait for the upstream's first byte, and between two stream chunks.
    first_byte_timeout: float = 600.0
    idle_timeout: float = 300.0
    # Seconds of upstream silence after which the client gets a `ping` event.
    ping_interval: float = 10.0
    # On SIGTERM: seconds in-flight requests may take to finish; then streams get an error.
    shutdown_grace: float = 30.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_connections: int = 512
    # Fetch OpenRouter's model list at start (max output, context); falls back to a table.
    fetch_model_list: bool = True
    # Re-asks when a model without native structured outputs answers off-schema.
    structured_output_retries: int = 2
    # Feature sections of the YAML file, each parsed by the feature that owns it:
    # server_tools.* (web_search, web_fetch, code_execution), mcp.* (connector, managed
    # servers), workspace.* (the built-in toolset), batches.* (Message Batches).
    server_tools: dict[str, Any] = field(default_factory=dict)
    mcp: dict[str, Any] = field(default_factory=dict)
    workspace: dict[str, Any] = field(default_factory=dict)
    batches: dict[str, Any] = field(default_factory=dict)
    # The URL clients reach this gateway at (for absolute links such as batch results_url);
    # empty: taken from each request's Host header.
    public_base_url: str = ""
    # The folder of the --config file (set by load): relative paths in it are taken from here.
    config_dir: str = ""
    log_level: str = "info"
    access_log: bool = False

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_config_file(Path(config_file)))
        environ = os.environ if env is None else env
        for f in fields(cls):
            raw = environ.get(_ENV_NAMES.get(f.name, f.name.upper()))
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if config_file is not None:
            values["config_dir"] = str(Path(config_file).resolve().parent)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        coerced = {name: _coerce(name, hints[name], value) for name, value in values.items()}
        settings = cls(**coerced)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.openrouter_base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"openrouter_base_url must be an http(s) URL, got {self.openrouter_base_url!r}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be 1-65535, got {self.port}")
        for name in ("connect_timeout", "first_byte_timeout", "idle_timeout", "ping_interval"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("rate_limit_requests_per_minute", "rate_limit_tokens_per_minute",
                     "max_retries", "structured_output_retries"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more")
        if self.debug_endpoints and not self.admin_api_key:
            raise SettingsError("debug_endpoints needs admin_api_key (ADMIN_API_KEY) to guard it")
        for key, limits in self.key_rate_limits.items():
            unknown = set(limits) - {"requests_per_minute", "tokens_per_minute"}
            if unknown or not all(isinstance(v, int) and v >= 0 for v in limits.values()):
                raise SettingsError(
                    f"key_rate_limits[{key[:4]}...]: use requests_per_minute and "
                    "tokens_per_minute with whole numbers"
                )

    @property
    def rate_limits_enabled(self) -> bool:
        return bool(self.rate_limit_requests_per_minute or self.rate_limit_tokens_per_minute
                    or self.key_rate_limits)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """The settings without secrets, for logs and health output."""
        out = dataclasses.asdict(self)
        out["openrouter_api_key"] = "set" if self.openrouter_api_key else "missing"
        out["proxy_api_keys"] = len(self.proxy_api_keys)
        out["admin_api_key"] = "set" if self.admin_api_key else "missing"
        out["key_rate_limits"] = len(self.key_rate_limits)
        out["redis_url"] = "set" if self.redis_url else ""
        # Managed MCP servers' env and headers hold secrets: names only.
        servers = self.mcp.get("servers")
        out["mcp"] = {"servers": sorted(servers) if isinstance(servers, dict) else []}
        return out


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of settings")
    return {str(k): v for k, v in data.items()}


def _coerce(name: str, hint: Any, value: Any) -> Any:
    origin = getattr(hint, "__origin__", hint)
    try:
        if hint is bool:
            return _to_bool(value)
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if origin is dict:
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise TypeError("expected a mapping")
            return dict(parsed)
    except (TypeError, ValueError, yaml.YAMLError) as exc:
        raise SettingsError(f"setting {name}: cannot use {value!r} ({exc})") from exc
    raise SettingsError(f"setting {name}: unsupported type {hint}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
