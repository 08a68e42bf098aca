"""`openrouter-anthropic doctor`: check the configuration and the upstream, say what to fix."""

from __future__ import annotations

import asyncio
import sys
import time

from .errors import GatewayError
from .profiles import Profiles
from .routing import Router
from .settings import Settings, SettingsError
from .upstream.openrouter import OpenRouterUpstream


def run_doctor(config_file: str | None) -> int:
    try:
        settings = Settings.load(config_file)
    except SettingsError as exc:
        _say("fail", f"configuration: {exc}", "fix the setting named above")
        return 1
    _say("ok", "configuration loads", config_file or "(environment only)")
    problems = 0
    if not settings.openrouter_api_key:
        problems += 1
        _say("warn", "OPENROUTER_API_KEY is not set",
             "export OPENROUTER_API_KEY=sk-or-... (needed for openrouter.ai)")
    if not settings.proxy_api_keys:
        _say("info", "no client keys (PROXY_API_KEYS): the server accepts any client",
             "fine on 127.0.0.1; set PROXY_API_KEYS before listening on other addresses")
    problems += asyncio.run(_check_upstream(settings))
    return 1 if problems else 0


async def _check_upstream(settings: Settings) -> int:
    upstream = OpenRouterUpstream(settings.openrouter_base_url, settings.openrouter_api_key,
                                  connect_timeout=settings.connect_timeout)
    problems = 0
    try:
        started = time.perf_counter()
        try:
            models = await upstream.list_models()
        except (GatewayError, OSError, TimeoutError) as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            _say("fail", f"upstream {settings.openrouter_base_url} not reachable: {message}",
                 "check OPENROUTER_BASE_URL and the network")
            return 1
        took = (time.perf_counter() - started) * 1000
        _say("ok", f"upstream answers ({len(models)} models listed, {took:.0f} ms)",
             settings.openrouter_base_url)
        profiles = Profiles()
        profiles.update_from_model_list(models)
        listed = {m.get("id") for m in models}
        router = Router(settings.big_model, settings.small_model, settings.aliases,
                        settings.fallbacks)
        for name, target in sorted(router.aliases.items()):
            if listed and target not in listed:
                problems += 1
                _say("fail", f"alias {name!r} -> {target!r}: not in the upstream's model list",
                     "choose a slug from https://openrouter.ai/models")
            else:
                _say("ok", f"alias {name!r} -> {target!r}", "")
    finally:
        await upstream.close()
    return problems


def _say(level: str, what: str, hint: str) -> None:
    line = f"[{level:>4}] {what}"
    if hint:
        line += f"\n       {hint}"
    print(line, file=sys.stdout)
