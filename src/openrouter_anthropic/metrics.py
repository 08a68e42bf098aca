"""Prometheus metrics without a third-party dependency.

Three metric types -- :class:`Counter`, :class:`Gauge`, :class:`Histogram` -- held by a
:class:`Registry` whose :meth:`Registry.render` produces the Prometheus text exposition
format 0.0.4 (``Content-Type: text/plain; version=0.0.4; charset=utf-8``, see
:data:`CONTENT_TYPE`). :class:`GatewayMetrics` owns the gateway's metrics and is what the
request path calls.

Cost model. Observations sit on the request path, so they are plain dict/list arithmetic:
one dict lookup keyed by the tuple of label values, one ``+=`` (a histogram adds a
``bisect``). There are no locks: each worker process runs one asyncio event loop and every
observation is made from it. :meth:`Registry.render` copies each metric's series before
formatting them, so a scrape from another thread sees a consistent-enough snapshot, but
observations themselves must stay on the loop thread.

Labels are passed positionally, as a tuple of values in the metric's fixed label-name
order: ``requests.inc(("/v1/messages", "claude-sonnet-4-5", "200"))``.

Bounded cardinality. Label values can come from clients (model names), so every metric
holds at most ``max_series`` distinct label sets (default :data:`DEFAULT_MAX_SERIES`).
Once full, an observation for a new label set is folded into a single overflow series
whose every label value is ``other`` (:data:`OVERFLOW_VALUE`), and the metric's
``overflowed`` count grows (exported as ``ora_metrics_label_overflow_total{metric}``).
Label values longer than :data:`MAX_LABEL_VALUE_LENGTH` are truncated when a series is
created, so one series cannot be made arbitrarily large either.

Several workers. With ``serve --workers N`` each worker process has its own registry and
answers scrapes with its own numbers only: a scrape hits whichever worker accepted the
connection. Aggregating across processes is out of scope; run one worker per scrape
target (or accept per-worker numbers) when exact totals matter.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from . import __version__

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_MAX_SERIES",
    "DURATION_BUCKETS",
    "OVERFLOW_VALUE",
    "TTFT_BUCKETS",
    "Counter",
    "GatewayMetrics",
    "Gauge",
    "Histogram",
    "Registry",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_MAX_SERIES = 1000
OVERFLOW_VALUE = "other"
MAX_LABEL_VALUE_LENGTH = 200

# Whole-request latency: 1 ms (a rejected request) .. 600 s (a long streamed generation).
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# Time to first token: dominated by upstream queueing and reasoning, 50 ms .. 5 min.
TTFT_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]
_M = TypeVar("_M", bound="_Metric")


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format spells it (``+Inf``, ``-Inf``, ``NaN``)."""
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _label_block(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class _Metric:
    """What the three types share: name, help, label names, the cardinality cap."""

    type_name = "untyped"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        labelnames = tuple(labelnames)
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for {name}")
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self.name = name
        self.documentation = documentation
        self.labelnames: tuple[str, ...] = labelnames
        self.max_series = max_series
        self.overflowed = 0
        """Observations folded into the overflow series because the metric was full."""
        self._overflow_key: LabelValues = (OVERFLOW_VALUE,) * len(labelnames)

    def _admit(self, labels: LabelValues, store: Mapping[LabelValues, object]) -> LabelValues:
        """The key under which a label set missing from ``store`` is kept (slow path only).

        Normalises the values (``str``, at most :data:`MAX_LABEL_VALUE_LENGTH` characters)
        and, when the metric already holds ``max_series`` label sets, folds them into the
        overflow key.
        """
        if type(labels) is not tuple or len(labels) != len(self.labelnames):
            raise ValueError(
                f"{self.name} takes {len(self.labelnames)} label values "
                f"{self.labelnames}, got {labels!r}"
            )
        if not all(type(v) is str and len(v) <= MAX_LABEL_VALUE_LENGTH for v in labels):
            labels = tuple(str(v)[:MAX_LABEL_VALUE_LENGTH] for v in labels)
            if labels in store:
                return labels
        if len(store) >= self.max_series:
            self.overflowed += 1
            return self._overflow_key
        return labels

    def series_count(self) -> int:
        """How many distinct label sets this metric holds (at most ``max_series`` + 1)."""
        raise NotImplementedError

    def render_lines(self) -> list[str]:
        raise NotImplementedError

    def _header(self) -> list[str]:
        return [
            f"# HELP {self.name} {_escape_help(self.documentation)}",
            f"# TYPE {self.name} {self.type_name}",
        ]


class _Scalar(_Metric):
    """One float per label set: what counters and gauges share."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        super().__init__(name, documentation, labelnames, max_series=max_series)
        self._values: dict[LabelValues, float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def _add(self, labels: LabelValues, amount: float) -> None:
        values = self._values
        try:
            values[labels] += amount
        except KeyError:
            key = self._admit(labels, values)
            values[key] = values.get(key, 0.0) + amount

    def value(self, labels: LabelValues = ()) -> float:
        """The current value (0 for a label set never seen). For tests and debugging."""
        return self._values.get(labels, 0.0)

    def series(self) -> dict[LabelValues, float]:
        return dict(self._values)

    def series_count(self) -> int:
        return len(self._values)

    def render_lines(self) -> list[str]:
        lines = self._header()
        names = self.labelnames
        for labels, value in list(self._values.items()):
            lines.append(f"{self.name}{_label_block(names, labels)} {format_value(value)}")
        return lines


class Counter(_Scalar):
    """A monotonically increasing value per label set."""

    type_name = "counter"

    def inc(self, labels: LabelValues = (), amount: float = 1.0) -> None:
        if not amount >= 0:  # also rejects NaN
            raise ValueError(f"{self.name}: counters only go up (got {amount})")
        self._add(labels, amount)


class Gauge(_Scalar):
    """A value per label set that can go up and down."""

    type_name = "gauge"

    def set(self, value: float, labels: LabelValues = ()) -> None:
        values = self._values
        if labels in values:
            values[labels] = value
        else:
            values[self._admit(labels, values)] = value

    def inc(self, labels: LabelValues = (), amount: float = 1.0) -> None:
        self._add(labels, amount)

    def dec(self, labels: LabelValues = (), amount: float = 1.0) -> None:
        self._add(labels, -amount)


class Histogram(_Metric):
    """Observations counted into fixed buckets, with their sum and count.

    Each series is one list: a non-cumulative count per bucket (the last one is ``+Inf``)
    followed by the sum. Cumulative ``_bucket`` counts and ``_count`` are computed when
    rendering, so an observation is one ``bisect`` and two list increments.
    """

    type_name = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = DURATION_BUCKETS,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        if "le" in labelnames:
            raise ValueError("'le' is reserved for histogram buckets")
        super().__init__(name, documentation, labelnames, max_series=max_series)
        bounds = sorted(float(b) for b in buckets)
        if bounds and bounds[-1] == math.inf:
            bounds.pop()
        if not bounds or any(b != b for b in bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._le = [format_value(b) for b in bounds] + ["+Inf"]
        self._nslots = len(bounds) + 2  # buckets + +Inf + sum
        self._series: dict[LabelValues, list[float]] = {}
        if not self.labelnames:
            self._series[()] = [0.0] * self._nslots

    def observe(self, labels: LabelValues, value: float) -> None:
        if value != value:  # NaN would poison the sum forever
            return
        try:
            slots = self._series[labels]
        except KeyError:
            slots = self._new_series(labels)
        slots[bisect_left(self.bounds, value)] += 1
        slots[-1] += value

    def _new_series(self, labels: LabelValues) -> list[float]:
        key = self._admit(labels, self._series)
        slots = self._series.get(key)
        if slots is None:
            slots = self._series[key] = [0.0] * self._nslots
        return slots

    def series_count(self) -> int:
        return len(self._series)

    def snapshot(self, labels: LabelValues = ()) -> tuple[list[float], float, float]:
        """(cumulative bucket counts incl. +Inf, sum, count) -- for tests and debugging."""
        slots = self._series.get(labels)
        if slots is None:
            return [0.0] * (self._nslots - 1), 0.0, 0.0
        cumulative: list[float] = []
        running = 0.0
        for n in slots[:-1]:
            running += n
            cumulative.append(running)
        return cumulative, slots[-1], running

    def render_lines(self) -> list[str]:
        lines = self._header()
        name = self.name
        names = self.labelnames
        for labels, slots in list(self._series.items()):
            slots = list(slots)
            base = ",".join(
                f'{n}="{escape_label_value(v)}"' for n, v in zip(names, labels, strict=True)
            )
            prefix = base + "," if base else ""
            running = 0.0
            for le, n in zip(self._le, slots[:-1], strict=True):
                running += n
                lines.append(f'{name}_bucket{{{prefix}le="{le}"}} {format_value(running)}')
            block = "{" + base + "}" if base else ""
            lines.append(f"{name}_sum{block} {format_value(slots[-1])}")
            lines.append(f"{name}_count{block} {format_value(running)}")
        return lines


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collect_hooks: list[Callable[[], None]] = []

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), **kw: int
    ) -> Counter:
        return self.register(Counter(name, documentation, labelnames, **kw))

    def gauge(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), **kw: int
    ) -> Gauge:
        return self.register(Gauge(name, documentation, labelnames, **kw))

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = DURATION_BUCKETS,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> Histogram:
        return self.register(
            Histogram(name, documentation, labelnames, buckets=buckets, max_series=max_series)
        )

    def on_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at the start of every :meth:`render` (to refresh scrape-time gauges)."""
        self._collect_hooks.append(hook)

    def metrics(self) -> list[_Metric]:
        return list(self._metrics.values())

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format 0.0.4."""
        for hook in self._collect_hooks:
            hook()
        lines: list[str] = []
        for metric in list(self._metrics.values()):
            lines.extend(metric.render_lines())
        return "\n".join(lines) + "\n"


def resident_memory_bytes() -> float:
    """This process's resident set size: ``/proc/self/statm``, else peak RSS from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # not on Windows
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return float(peak if sys.platform == "darwin" else peak * 1024)


class GatewayMetrics:
    """The gateway's metrics, behind methods named for what happened.

    Every method is an O(1) dict update (about a microsecond); call them from the event
    loop. ``registry.render()`` gives the ``/metrics`` body (:data:`CONTENT_TYPE`).
    """

    def __init__(
        self,
        *,
        version: str = __version__,
        max_series: int = DEFAULT_MAX_SERIES,
        registry: Registry | None = None,
    ) -> None:
        self.registry = r = registry if registry is not None else Registry()
        self.started_at = time.monotonic()
        cap = max_series
        self._requests = r.counter(
            "ora_requests_total",
            "Requests answered, by route, requested model and HTTP status.",
            ("route", "model", "status"),
            max_series=cap,
        )
        self._duration = r.histogram(
            "ora_request_duration_seconds",
            "Time from request received to response finished (streams: last byte).",
            ("route",),
            buckets=DURATION_BUCKETS,
            max_series=cap,
        )
        self._ttft = r.histogram(
            "ora_time_to_first_token_seconds",
            "Time from request received to the first content token from upstream.",
            ("model",),
            buckets=TTFT_BUCKETS,
            max_series=cap,
        )
        self._tokens = r.counter(
            "ora_tokens_total",
            "Tokens reported by upstream usage, by model and kind "
            "(input, output, cache_read, cache_creation).",
            ("model", "kind"),
            max_series=cap,
        )
        self._cost = r.counter(
            "ora_cost_usd_total",
            "Upstream cost in US dollars as reported by OpenRouter, by model.",
            ("model",),
            max_series=cap,
        )
        self._upstream_errors = r.counter(
            "ora_upstream_errors_total",
            "Errors from the upstream, by type (rate_limit_error, overloaded_error, "
            "timeout_error, api_error, connection, ...).",
            ("type",),
            max_series=cap,
        )
        self._retries = r.counter(
            "ora_upstream_retries_total",
            "Upstream requests retried, by reason.",
            ("reason",),
            max_series=cap,
        )
        self._streams = r.gauge("ora_streams_in_flight", "Streaming responses currently open.")
        self._rate_limited = r.counter(
            "ora_rate_limited_total",
            "Requests rejected by the gateway's own rate limiter, by API key id.",
            ("key",),
            max_series=cap,
        )
        self._rss = r.gauge(
            "ora_process_resident_memory_bytes", "Resident memory of this worker process."
        )
        self._uptime = r.gauge("ora_uptime_seconds", "Seconds since this worker started.")
        self._build = r.gauge(
            "ora_build_info", "Build information; the value is always 1.", ("version",)
        )
        self._build.set(1.0, (version,))
        self._overflow = r.counter(
            "ora_metrics_label_overflow_total",
            "Observations folded into the label value 'other' because a metric reached "
            "its cap on distinct label sets.",
            ("metric",),
        )
        r.on_collect(self._collect)

    # -- the request path ------------------------------------------------------------

    def request_finished(self, route: str, model: str, status: int, seconds: float) -> None:
        self._requests.inc((route, model, str(status)))
        self._duration.observe((route,), seconds)

    def first_token(self, model: str, seconds: float) -> None:
        self._ttft.observe((model,), seconds)

    def tokens(
        self, model: str, input: int, output: int, cache_read: int, cache_creation: int
    ) -> None:
        # Kinds with a zero (or bogus negative) count are skipped: cheaper, and never raises.
        inc = self._tokens.inc
        if input > 0:
            inc((model, "input"), input)
        if output > 0:
            inc((model, "output"), output)
        if cache_read > 0:
            inc((model, "cache_read"), cache_read)
        if cache_creation > 0:
            inc((model, "cache_creation"), cache_creation)

    def cost(self, model: str, usd: float) -> None:
        if usd > 0:  # skips 0, negatives and NaN rather than raise on the request path
            self._cost.inc((model,), usd)

    def upstream_error(self, kind: str) -> None:
        self._upstream_errors.inc((kind,))

    def upstream_retry(self, reason: str) -> None:
        self._retries.inc((reason,))

    def stream_started(self) -> None:
        self._streams.inc()

    def stream_finished(self) -> None:
        self._streams.dec()

    def rate_limited(self, key_id: str) -> None:
        self._rate_limited.inc((key_id,))

    # -- scrape time -----------------------------------------------------------------

    def render(self) -> str:
        """The ``/metrics`` body; serve it with ``Content-Type:`` :data:`CONTENT_TYPE`."""
        return self.registry.render()

    def _collect(self) -> None:
        self._rss.set(resident_memory_bytes())
        self._uptime.set(time.monotonic() - self.started_at)
        overflow = self._overflow
        for metric in self.registry.metrics():
            if metric.overflowed and metric is not overflow:
                overflow._values[(metric.name,)] = float(metric.overflowed)
