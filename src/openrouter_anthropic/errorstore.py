"""A bounded in-memory store of recent errors, behind the debug endpoints.

``/debug/errors/recent`` -> :meth:`ErrorStore.recent`, ``/debug/errors/{correlation_id}`` ->
:meth:`ErrorStore.get`, ``/debug/errors/stats`` -> :meth:`ErrorStore.stats`.

The store keeps the last ``capacity`` errors: a deque of entries in arrival order plus a
dict from correlation id to entry, so recording, evicting the oldest and looking one up are
all O(1). The per-type/status/model counts in :meth:`ErrorStore.stats` are kept up to date
incrementally and describe the errors currently held; ``total_recorded`` counts every error
since start.

Nothing secret is stored: every string that goes in (message, route, model, the strings
inside ``detail``, its keys too) passes through :func:`scrub`, which replaces the secrets
given at construction (API keys) and anything that looks like a bearer token or an
``sk-...`` key with ``[REDACTED]``; values under header-like keys (``authorization``,
``x-api-key``, ``api_key``, ...) in ``detail`` are redacted whole. Strings are also cut to
``max_text`` characters and ``detail`` to a bounded depth and width, so one huge upstream
body cannot make a single entry arbitrarily large.

Like the metrics, the store has no locks: one per worker process, used from its event
loop. With several workers each has its own store and a debug request sees only the
errors of the worker that answered it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .redact import REDACTED, SENSITIVE_KEYS, make_scrubber, normalise_secrets, scrub

__all__ = ["REDACTED", "ErrorStore", "make_scrubber", "scrub"]

def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _drop(counts: dict[str, int], key: str) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]


class ErrorStore:
    """The last ``capacity`` errors, newest evicting oldest.

    Entries are plain dicts (JSON-ready)::

        {"correlation_id", "timestamp" (unix seconds), "time" (ISO 8601 UTC), "status",
         "error_type", "message", "route", "model", "upstream_status", "detail"}

    Recording the same correlation id twice keeps both entries in :meth:`recent`;
    :meth:`get` answers the newest.
    """

    def __init__(
        self,
        capacity: int = 500,
        *,
        secrets: Iterable[str] = (),
        max_text: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_text = max_text
        self._clock = clock
        self._entries: deque[dict[str, Any]] = deque()
        self._by_id: dict[str, dict[str, Any]] = {}
        self._by_type: dict[str, int] = {}
        self._by_status: dict[str, int] = {}
        self._by_model: dict[str, int] = {}
        self.total_recorded = 0
        self.evicted = 0
        self._secrets: tuple[str, ...] = ()
        self._scrub: Callable[[str], str] = make_scrubber()
        self.set_secrets(secrets)

    # -- secrets ---------------------------------------------------------------------

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the secrets redacted from what is recorded from now on."""
        self._secrets = normalise_secrets(secrets)
        self._scrub = make_scrubber(self._secrets)

    def add_secret(self, secret: str) -> None:
        self.set_secrets((*self._secrets, secret))

    def scrub(self, text: str) -> str:
        """``text`` scrubbed of this store's secrets and credential-looking tokens."""
        return self._scrub(text)

    # -- recording -------------------------------------------------------------------

    def record(
        self,
        correlation_id: str,
        *,
        status: int,
        error_type: str,
        message: str,
        route: str,
        model: str | None,
        upstream_status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store one error (scrubbed, timestamped); returns the stored entry."""
        now = self._clock()
        entry: dict[str, Any] = {
            "correlation_id": correlation_id,
            "timestamp": now,
            "time": _iso(now),
            "status": status,
            "error_type": self._text(error_type, 128),
            "message": self._text(message, self.max_text),
            "route": self._text(route, 512),
            "model": None if model is None else self._text(model, 256),
            "upstream_status": upstream_status,
            "detail": None if detail is None else self._clean(detail, 0),
        }
        entries = self._entries
        if len(entries) >= self.capacity:
            self._evict(entries.popleft())
        entries.append(entry)
        self._by_id[correlation_id] = entry
        _bump(self._by_type, entry["error_type"])
        _bump(self._by_status, str(status))
        _bump(self._by_model, self._model_key(entry))
        self.total_recorded += 1
        return entry

    def _evict(self, old: dict[str, Any]) -> None:
        self.evicted += 1
        if self._by_id.get(old["correlation_id"]) is old:
            del self._by_id[old["correlation_id"]]
        _drop(self._by_type, old["error_type"])
        _drop(self._by_status, str(old["status"]))
        _drop(self._by_model, self._model_key(old))

    @staticmethod
    def _model_key(entry: dict[str, Any]) -> str:
        model = entry["model"]
        return model if model is not None else "unknown"

    def _text(self, value: object, limit: int) -> str:
        text = self._scrub(value if isinstance(value, str) else str(value))
        if len(text) > limit:
            text = text[:limit] + f"...[truncated {len(text) - limit} chars]"
        return text

    _MAX_DEPTH = 6
    _MAX_ITEMS = 100

    def _clean(self, value: Any, depth: int) -> Any:
        """A scrubbed, bounded, JSON-ready copy of a ``detail`` value."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._text(value, self.max_text)
        if depth >= self._MAX_DEPTH:
            return "[...]"
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= self._MAX_ITEMS:
                    out["..."] = f"{len(value) - i} more keys"
                    break
                key = self._text(k, 256)
                if str(k).lower().replace("-", "_") in SENSITIVE_KEYS:
                    out[key] = REDACTED
                else:
                    out[key] = self._clean(v, depth + 1)
            return out
        if isinstance(value, list | tuple):
            items = [self._clean(v, depth + 1) for v in value[: self._MAX_ITEMS]]
            if len(value) > self._MAX_ITEMS:
                items.append(f"... {len(value) - self._MAX_ITEMS} more items")
            return items
        if isinstance(value, bytes | bytearray):
            return self._text(value.decode("utf-8", "replace"), self.max_text)
        return self._text(value, self.max_text)

    # -- reading ---------------------------------------------------------------------

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, newest first (shallow copies)."""
        if limit <= 0:
            return []
        out: list[dict[str, Any]] = []
        for entry in reversed(self._entries):
            out.append(dict(entry))
            if len(out) >= limit:
                break
        return out

    def get(self, correlation_id: str) -> dict[str, Any] | None:
        """The newest entry recorded under ``correlation_id``, if still held."""
        entry = self._by_id.get(correlation_id)
        return None if entry is None else dict(entry)

    def stats(self) -> dict[str, Any]:
        """Counts over the errors currently held, plus lifetime totals."""
        entries = self._entries
        oldest = entries[0]["timestamp"] if entries else None
        newest = entries[-1]["timestamp"] if entries else None
        return {
            "total_recorded": self.total_recorded,
            "evicted": self.evicted,
            "size": len(entries),
            "capacity": self.capacity,
            "by_error_type": dict(self._by_type),
            "by_status": dict(self._by_status),
            "by_model": dict(self._by_model),
            "oldest_timestamp": oldest,
            "newest_timestamp": newest,
            "oldest": None if oldest is None else _iso(oldest),
            "newest": None if newest is None else _iso(newest),
        }

    def clear(self) -> None:
        """Forget every held error (lifetime totals are kept)."""
        self._entries.clear()
        self._by_id.clear()
        self._by_type.clear()
        self._by_status.clear()
        self._by_model.clear()

    def __len__(self) -> int:
        return len(self._entries)
