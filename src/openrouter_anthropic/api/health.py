"""GET /health (liveness) and GET /health/detailed (version, uptime, upstream, config)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..errors import GatewayError
from ..settings import Settings
from ..upstream import Upstream

_PROBE_TTL = 30.0
_PROBE_TIMEOUT = 5.0


@dataclass
class UpstreamProbe:
    """Upstream reachability, probed at most every 30 s so health checks cost nothing."""

    upstream: Upstream
    checked_at: float = 0.0
    result: dict[str, Any] | None = None
    _lock: asyncio.Lock | None = None

    async def status(self) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.result is None or time.monotonic() - self.checked_at > _PROBE_TTL:
                self.result = await self._probe()
                self.checked_at = time.monotonic()
        return self.result

    async def _probe(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                models = await self.upstream.list_models()
        except (GatewayError, OSError, TimeoutError) as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return {"reachable": False, "error": message, "checked_at": time.time()}
        return {
            "reachable": True,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "models_listed": len(models),
            "checked_at": time.time(),
        }


def liveness() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


async def detailed(settings: Settings, probe: UpstreamProbe, started_at: float,
                   extra: dict[str, Any]) -> dict[str, Any]:
    upstream = await probe.status()
    return {
        "status": "ok" if upstream["reachable"] else "degraded",
        "version": __version__,
        "uptime_seconds": round(time.time() - started_at, 1),
        "upstream": {"base_url": settings.openrouter_base_url, **upstream},
        "config": settings.summary(),
        **extra,
    }
