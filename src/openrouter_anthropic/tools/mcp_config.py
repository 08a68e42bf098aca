"""`mcp.servers.<name>` of the config file, parsed and checked once at start.

```yaml
mcp:
  servers:
    files:
      transport: stdio              # or http; default: stdio with `command`, http with `url`
      command: python               # relative paths are taken from the config file's folder
      args: [servers/files.py]
      env: {ROOT: "${HOME}/data"}   # ${VAR} and ${VAR:-default} expanded from the environment
      cwd: .                        # default: the config file's folder
      keys: [team-key-1]            # client keys (or key ids) that may use it; default: all
      attach: false                 # true (or a list of keys): offered on every request
      health_interval_s: 30
    docs:
      transport: http
      url: http://127.0.0.1:9000/mcp
      headers: {Authorization: "Bearer ${DOCS_TOKEN}"}
```

`${VAR}` and `${VAR:-default}` are expanded from the environment when the settings are
loaded (an unset variable without a default is an error naming the server and key). Relative
paths are taken from the config file's folder (`Settings.config_dir`), which is also a stdio
server's default working directory. `keys` and `attach` take client keys (as in
`proxy_api_keys`) or their ids (`key_<hash>`, as in logs and metrics).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..settings import SettingsError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_KEY_ID = re.compile(r"^key_[0-9a-f]{10}$")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    transport: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    keys: frozenset[str] | None = None  # key ids; None: every key
    attach: bool | frozenset[str] = False  # key ids when a set
    health_interval_s: float = 30.0
    startup_timeout_s: float = 30.0
    call_timeout_s: float = 120.0
    shutdown_grace_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    # A server healthy this long before it fails restarts after the initial backoff again.
    stable_after_s: float = 60.0
    # How long a request waits for a server that has not listed its tools yet.
    request_wait_s: float = 10.0
    enabled: bool = True

    @property
    def secrets(self) -> list[str]:
        values = [*self.env.values(), *self.headers.values()]
        return [v for v in values if len(v) >= 6] + \
            [v.split(" ", 1)[1] for v in self.headers.values() if " " in v]

    def allows(self, key_id: str) -> bool:
        return self.keys is None or key_id in self.keys


_FIELDS = {"transport", "command", "args", "env", "cwd", "url", "headers", "keys", "attach",
           "health_interval_s", "startup_timeout_s", "call_timeout_s", "shutdown_grace_s",
           "backoff_initial_s", "backoff_max_s", "stable_after_s", "request_wait_s",
           "enabled"}


def parse_servers(
    mcp: Mapping[str, Any], config_dir: str = "", environ: Mapping[str, str] | None = None
) -> dict[str, ServerConfig]:
    """`mcp.servers` -> configs; SettingsError naming the server and key on a bad entry."""
    raw = mcp.get("servers") or {}
    if not isinstance(raw, Mapping):
        raise SettingsError("mcp.servers must be a mapping of server name to settings")
    env = os.environ if environ is None else environ
    base = Path(config_dir) if config_dir else None
    return {str(name): _server(str(name), entry, base, env) for name, entry in raw.items()}


def _server(name: str, entry: Any, base: Path | None, env: Mapping[str, str]) -> ServerConfig:
    where = f"mcp.servers.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise SettingsError(f"{where}: a server name uses letters, digits, _ and - only")
    if not isinstance(entry, Mapping):
        raise SettingsError(f"{where} must be a mapping")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}")

    def text(value: Any, key: str) -> str:
        if not isinstance(value, str | int | float):
            raise SettingsError(f"{where}.{key} must be a string")
        return _expand(str(value), f"{where}.{key}", env)

    def strings(key: str) -> Mapping[str, str]:
        value = entry.get(key) or {}
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}.{key} must be a mapping")
        return {str(k): text(v, f"{key}.{k}") for k, v in value.items()}

    transport = entry.get("transport") or ("http" if entry.get("url") else "stdio")
    if transport not in ("stdio", "http"):
        raise SettingsError(f"{where}.transport must be stdio or http, got {transport!r}")
    numbers = {key: _positive(entry[key], f"{where}.{key}")
               for key in _FIELDS if key.endswith("_s") and key in entry}
    common: dict[str, Any] = {
        "keys": _key_ids(entry.get("keys"), f"{where}.keys"),
        "attach": _attach(entry.get("attach", False), f"{where}.attach"),
        "enabled": bool(entry.get("enabled", True)),
        **numbers,
    }
    if transport == "http":
        url = text(entry.get("url", ""), "url")
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{where}.url must be an http(s) URL")
        return ServerConfig(name, "http", url=url, headers=strings("headers"), **common)
    command = text(entry.get("command", ""), "command")
    if not command:
        raise SettingsError(f"{where}.command is required for a stdio server")
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise SettingsError(f"{where}.args must be a list")
    cwd_raw = entry.get("cwd")
    cwd = _from(base, text(cwd_raw, "cwd")) if cwd_raw is not None else (
        str(base) if base is not None else None)
    if "/" in command and not os.path.isabs(command):
        command = _from(base, command)
    return ServerConfig(name, "stdio", command=command,
                        args=tuple(text(a, "args") for a in args), env=strings("env"),
                        cwd=cwd, **common)


def _expand(value: str, where: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in env:
            return env[var]
        if default is not None:
            return default
        raise SettingsError(f"{where}: environment variable {var} is not set "
                            f"(write ${{{var}:-default}} for a default)")

    return _VAR.sub(one, value)


def _from(base: Path | None, path: str) -> str:
    if base is None or os.path.isabs(path):
        return path
    return str((base / path).resolve())


def _positive(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where} must be a number") from None
    if number <= 0:
        raise SettingsError(f"{where} must be positive")
    return number


def _key_ids(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{where} must be a list of client keys")
    return frozenset(as_key_id(v) for v in value)


def _attach(value: Any, where: str) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    ids = _key_ids(value, where)
    return ids if ids is not None else False


def as_key_id(key: str) -> str:
    """A client key as the id requests carry (`key_<hash>`); ids are taken as they are."""
    if _KEY_ID.match(key):
        return key
    from ..app import key_id  # the one definition of a key id; app imports this module

    return key_id(key)
