"""`batches.*` in the config file, parsed into a typed, validated BatchConfig.

Durations take seconds or a number with a unit (`500ms`, `2s`, `10m`, `24h`, `29d`) and
sizes bytes or a number with a unit (`256MB`, `1GiB`), as people write them in YAML.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import SettingsError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.I)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.I)
_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}
EXECUTORS = ("local", "prefect")


def default_database_url() -> str:
    """SQLite under the user's data directory (XDG), created on the first batch."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'openrouter-anthropic' / 'batches.db'}"


@dataclass(frozen=True, slots=True)
class BatchConfig:
    enabled: bool = True
    # sqlite:///path (default: under XDG_DATA_HOME) or postgresql://user@host/db.
    database_url: str = ""
    executor: str = "local"
    chunk_size: int = 100
    # Upstream calls in flight at once, per process (per flow run on a Prefect worker).
    concurrency: int = 8
    max_attempts: int = 5
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    expire_after: float = 24 * 3600.0
    results_retention: float = 29 * 86400.0
    # A request's lease: another worker may take it over when this long passes without a
    # heartbeat (its worker died). Heartbeats come every lease / 3.
    lease: float = 30.0
    # How often a worker looks for new work, cancels and expiry made by another process.
    poll_interval: float = 1.0
    max_body_bytes: int = 256 * 2**20
    max_requests: int = 100_000
    prefect_work_pool: str = "openrouter-anthropic-batches"
    prefect_deployment: str = "openrouter-anthropic-batches"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> BatchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise SettingsError(f"unknown batches setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw or raw[f.name] is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw[f.name])
        config = cls(**values)
        if not config.database_url:
            config = dataclasses.replace(config, database_url=default_database_url())
        config.validate()
        return config

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise SettingsError(f"batches.executor must be one of {', '.join(EXECUTORS)}, "
                                f"got {self.executor!r}")
        if not self.database_url.startswith(("sqlite:", "postgresql:", "postgres:",
                                             "postgresql+asyncpg:")):
            raise SettingsError("batches.database_url must start with sqlite:/// or "
                                "postgresql://")
        if self.is_sqlite:
            self.sqlite_path  # noqa: B018 (raises on a malformed SQLite URL)
        for name in ("chunk_size", "concurrency", "max_attempts", "max_requests",
                     "max_body_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"batches.{name} must be 1 or more")
        for name in ("expire_after", "results_retention", "lease", "poll_interval"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"batches.{name} must be positive")
        if self.retry_base_delay < 0 or self.retry_max_delay < self.retry_base_delay:
            raise SettingsError("batches.retry_base_delay must be 0 or more and at most "
                                "batches.retry_max_delay")

    def check_environment(self) -> None:
        """What a server with this configuration needs from its environment."""
        if self.enabled and self.executor == "prefect" and not os.environ.get("PREFECT_API_URL"):
            raise SettingsError("batches.executor: prefect needs PREFECT_API_URL (the Prefect "
                                "server's API, e.g. http://127.0.0.1:4200/api)")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        """The file of a sqlite:/// URL: `sqlite:////abs/file.db` or `sqlite:///rel/file.db`."""
        if not self.database_url.startswith("sqlite:///"):
            raise SettingsError("batches.database_url: write SQLite URLs as sqlite:///path")
        return Path(self.database_url[len("sqlite:///"):])


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30s, 10m, 24h or 29d, got {value!r}")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"expected a size such as 256MB, got {value!r}")
    return int(float(match.group(1)) * _BYTES[(match.group(2) or "b").lower()])


def _coerce(name: str, hint: Any, value: Any) -> Any:
    try:
        if hint == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError("expected true or false")
            return text in ("true", "1", "yes", "on")
        if hint == "float":
            return parse_duration(value)
        if hint == "int":
            return parse_size(value) if name == "max_body_bytes" else _whole(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"batches.{name}: cannot use {value!r} ({exc})") from exc


def _whole(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    return int(value)
