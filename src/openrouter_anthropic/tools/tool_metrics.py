"""Per-tool call statistics: `GET /tool-metrics` (JSON) and counters in `/metrics`.

A tool is named as the issue spells it: `web_fetch`, `web_search`, `code_execution`,
`mcp:<server>/<tool>`, `workspace:<tool>`. The loop records one observation per call that
was attempted (refused calls included, with their error code). Percentiles come from the
last `window` durations of each tool: exact over a bounded, recent sample, which is what an
operator looking at a dashboard wants, and O(1) memory per tool.

Like `GatewayMetrics`, observations are plain dict/deque updates made on the event loop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..metrics import Counter, Histogram, Registry
from .base import MCP_TOOL_USE, ToolOutcome, ToolSpec

# Tool calls: a local fetch (10 ms) .. a long code execution or MCP call (5 min).
TOOL_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
DEFAULT_WINDOW = 1024
# Tool names come from configuration and from MCP servers (not from clients directly), but a
# server can list many tools: cap the distinct tools tracked like the Prometheus series.
MAX_TOOLS = 1000
OVERFLOW_TOOL = "other"


def mcp_tool_metric_name(server_name: str, tool_name: str) -> str:
    return f"mcp:{server_name}/{tool_name}"


def metric_name(spec: ToolSpec) -> str:
    """`web_fetch`, `mcp:<server>/<tool>`, `workspace:<tool>` (the built-in toolset)."""
    if spec.block_type == MCP_TOOL_USE and spec.server_name is not None:
        if spec.server_name == "workspace":
            return f"workspace:{spec.client_name}"
        return mcp_tool_metric_name(spec.server_name, spec.client_name)
    return spec.client_name


@dataclass(slots=True)
class _ToolStats:
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    durations_ms: deque[float] = field(default_factory=deque)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.durations_ms)
        return {
            "calls": self.calls,
            "errors": dict(sorted(self.errors.items())),
            "error_count": sum(self.errors.values()),
            "p50_ms": _percentile(ordered, 0.50),
            "p95_ms": _percentile(ordered, 0.95),
        }


class ToolMetrics:
    """Calls, errors by code and latency per tool; mirrored as Prometheus series."""

    def __init__(self, registry: Registry | None = None, *, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._tools: dict[str, _ToolStats] = {}
        self._calls: Counter | None = None
        self._errors: Counter | None = None
        self._duration: Histogram | None = None
        if registry is not None:
            self._calls = registry.counter(
                "ora_tool_calls_total", "Gateway-run tool calls, by tool.", ("tool",))
            self._errors = registry.counter(
                "ora_tool_errors_total", "Gateway-run tool calls that failed, by tool and "
                "error code.", ("tool", "code"))
            self._duration = registry.histogram(
                "ora_tool_duration_seconds", "Time a gateway-run tool call took, by tool.",
                ("tool",), buckets=TOOL_BUCKETS)

    def record(self, tool: str, seconds: float, error_code: str | None = None) -> None:
        """One call of `tool` that took `seconds`; `error_code` when it failed."""
        stats = self._tools.get(tool)
        if stats is None:
            if len(self._tools) >= MAX_TOOLS:
                tool = OVERFLOW_TOOL
            stats = self._tools.setdefault(tool, _ToolStats(durations_ms=deque(maxlen=self.window)))
        stats.calls += 1
        stats.durations_ms.append(max(seconds, 0.0) * 1000.0)
        if error_code is not None:
            stats.errors[error_code] = stats.errors.get(error_code, 0) + 1
        if self._calls is not None and self._duration is not None and self._errors is not None:
            self._calls.inc((tool,))
            self._duration.observe((tool,), seconds)
            if error_code is not None:
                self._errors.inc((tool, error_code))

    def observe(self, spec: ToolSpec, outcome: ToolOutcome, seconds: float) -> None:
        """The tool loop's CallObserver: every call the model made, refused ones included."""
        code = (outcome.error_code or "error") if outcome.is_error else None
        self.record(metric_name(spec), seconds, code)

    def snapshot(self) -> dict[str, Any]:
        """The `/tool-metrics` body: `{"tools": {<tool>: {calls, errors, p50_ms, p95_ms}}}`."""
        tools = {name: stats.snapshot() for name, stats in sorted(self._tools.items())}
        return {"tools": tools, "window": self.window}


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list, in ms rounded to 0.1; None when empty."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
    return round(ordered[int(rank) - 1], 1)
