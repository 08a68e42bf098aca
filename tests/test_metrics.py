"""Prometheus metrics: the types, the text exposition format, bounded cardinality."""

from __future__ import annotations

import math
import re
import timeit

import pytest

from openrouter_anthropic import __version__
from openrouter_anthropic.metrics import (
    DURATION_BUCKETS,
    OVERFLOW_VALUE,
    Counter,
    GatewayMetrics,
    Gauge,
    Histogram,
    Registry,
    escape_label_value,
    format_value,
)

# -- a strict reader of the text format (0.0.4) ---------------------------------------

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\n]|\\[\\\"n])*\",?)*)\})?"
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(samples, types) of an exposition; asserts every line is well-formed."""
    assert text.endswith("\n")
    samples: Samples = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"duplicate HELP for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        labels = frozenset(
            (k, re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], v))
            for k, v in _LABEL.findall(m.group("labels") or "")
        )
        key = (m.group("name"), labels)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(m.group("value").replace("Inf", "inf"))
        family = re.sub(r"_(bucket|sum|count)$", "", m.group("name"))
        assert m.group("name") in types or family in types, f"sample before TYPE: {line}"
    return samples, types


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# -- the types -------------------------------------------------------------------------


def test_counter_with_labels() -> None:
    c = Counter("things_total", "Things.", ("a", "b"))
    c.inc(("x", "y"))
    c.inc(("x", "y"), 2.5)
    c.inc(("x", "z"))
    assert c.value(("x", "y")) == 3.5
    assert c.value(("x", "z")) == 1
    assert c.value(("nope", "nope")) == 0
    with pytest.raises(ValueError):
        c.inc(("x", "y"), -1)
    with pytest.raises(ValueError):
        c.inc(("x", "y"), math.nan)
    with pytest.raises(ValueError):
        c.inc(("only-one",))


def test_unlabelled_counter_renders_zero() -> None:
    r = Registry()
    r.counter("ticks_total", "Ticks.")
    samples, types = parse(r.render())
    assert types == {"ticks_total": "counter"}
    assert sample(samples, "ticks_total") == 0


def test_gauge() -> None:
    g = Gauge("level", "Level.", ("k",))
    g.set(5, ("a",))
    g.inc(("a",))
    g.dec(("a",), 3)
    g.dec(("b",))
    assert g.value(("a",)) == 3
    assert g.value(("b",)) == -1


def test_histogram_buckets_are_le_inclusive_and_cumulative() -> None:
    h = Histogram("lat_seconds", "Latency.", ("route",), buckets=(0.1, 1, 10))
    for v in (0.05, 0.1, 0.5, 1.0, 5, 100):
        h.observe(("/r",), v)
    h.observe(("/r",), math.nan)  # ignored
    cumulative, total, count = h.snapshot(("/r",))
    assert cumulative == [2, 4, 5, 6]  # <=0.1, <=1, <=10, +Inf
    assert count == 6
    assert total == pytest.approx(106.65)

    r = Registry()
    r.register(h)
    samples, types = parse(r.render())
    assert types == {"lat_seconds": "histogram"}
    assert sample(samples, "lat_seconds_bucket", route="/r", le="0.1") == 2
    assert sample(samples, "lat_seconds_bucket", route="/r", le="1") == 4
    assert sample(samples, "lat_seconds_bucket", route="/r", le="10") == 5
    assert sample(samples, "lat_seconds_bucket", route="/r", le="+Inf") == 6
    assert sample(samples, "lat_seconds_count", route="/r") == 6
    assert sample(samples, "lat_seconds_sum", route="/r") == pytest.approx(106.65)


def test_unlabelled_histogram() -> None:
    r = Registry()
    h = r.histogram("h_seconds", "H.", buckets=(1, 2, math.inf))
    h.observe((), 1.5)
    samples, _ = parse(r.render())
    assert sample(samples, "h_seconds_bucket", le="1") == 0
    assert sample(samples, "h_seconds_bucket", le="2") == 1
    assert sample(samples, "h_seconds_bucket", le="+Inf") == 1
    assert sample(samples, "h_seconds_count") == 1
    assert sample(samples, "h_seconds_sum") == 1.5


def test_invalid_definitions() -> None:
    with pytest.raises(ValueError):
        Counter("bad-name", "x")
    with pytest.raises(ValueError):
        Counter("ok_total", "x", ("bad-label",))
    with pytest.raises(ValueError):
        Counter("ok_total", "x", ("a", "a"))
    with pytest.raises(ValueError):
        Histogram("h", "x", ("le",))
    with pytest.raises(ValueError):
        Histogram("h", "x", buckets=())
    r = Registry()
    r.counter("dup_total", "x")
    with pytest.raises(ValueError):
        r.counter("dup_total", "x")


def test_escaping_and_value_format() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"

    r = Registry()
    c = r.counter("odd_total", "Help with a \\ backslash\nand a newline.", ("v",))
    nasty = 'quote " backslash \\ newline \n brace } comma , equals ='
    c.inc((nasty,))
    text = r.render()
    assert "# HELP odd_total Help with a \\\\ backslash\\nand a newline." in text
    samples, _ = parse(text)
    assert sample(samples, "odd_total", v=nasty) == 1


# -- bounded cardinality --------------------------------------------------------------


def test_label_sets_are_capped_and_fold_into_other() -> None:
    c = Counter("capped_total", "x", ("model", "status"), max_series=10)
    for i in range(10):
        c.inc((f"m{i}", "200"))
    for i in range(10, 1000):
        c.inc((f"m{i}", "200"))
    series = c.series()
    assert len(series) == 11  # the cap plus the one overflow series
    assert series[(OVERFLOW_VALUE, OVERFLOW_VALUE)] == 990
    assert c.overflowed == 990
    assert sum(series.values()) == 1000  # nothing lost, only folded
    c.inc(("m3", "200"))  # label sets admitted before the cap keep counting
    assert c.value(("m3", "200")) == 2

    h = Histogram("capped_seconds", "x", ("model",), max_series=5)
    for i in range(100):
        h.observe((f"m{i}",), 0.1)
    assert h.series_count() == 6
    assert h.snapshot((OVERFLOW_VALUE,))[2] == 95


def test_random_model_names_do_not_grow_memory() -> None:
    m = GatewayMetrics(max_series=50)
    for i in range(5000):
        model = f"random-model-{i}"
        m.request_finished("/v1/messages", model, 200, 0.01)
        m.first_token(model, 0.01)
        m.tokens(model, 1, 1, 1, 1)
        m.cost(model, 0.001)
    for metric in m.registry.metrics():
        assert metric.series_count() <= 51, metric.name
    samples, _ = parse(m.render())
    other = OVERFLOW_VALUE
    assert (
        sample(samples, "ora_requests_total", route=other, model=other, status=other) == 5000 - 50
    )
    assert sample(samples, "ora_metrics_label_overflow_total", metric="ora_requests_total") == (
        5000 - 50
    )
    assert sample(samples, "ora_tokens_total", model=other, kind=other) > 0


def test_long_label_values_are_truncated_once() -> None:
    c = Counter("long_total", "x", ("model",), max_series=3)
    huge = "m" * 100_000
    c.inc((huge,))
    c.inc((huge,))
    ((key, value),) = c.series().items()
    assert len(key[0]) <= 200
    assert value == 2
    assert c.overflowed == 0


# -- GatewayMetrics -------------------------------------------------------------------


def test_gateway_metrics_end_to_end() -> None:
    m = GatewayMetrics(version="9.9.9")
    m.request_finished("/v1/messages", "claude-sonnet-4-5", 200, 0.42)
    m.request_finished("/v1/messages", "claude-sonnet-4-5", 200, 12.0)
    m.request_finished("/v1/messages", "claude-sonnet-4-5", 529, 0.002)
    m.first_token("claude-sonnet-4-5", 0.8)
    m.tokens("claude-sonnet-4-5", input=1200, output=340, cache_read=1000, cache_creation=0)
    m.tokens("claude-sonnet-4-5", input=10, output=5, cache_read=0, cache_creation=7)
    m.cost("claude-sonnet-4-5", 0.0125)
    m.cost("claude-sonnet-4-5", 0.0075)
    m.cost("claude-sonnet-4-5", math.nan)  # ignored, never raises
    m.cost("claude-sonnet-4-5", -1)  # ignored, never raises
    for kind in ("rate_limit_error", "overloaded_error", "timeout_error", "connection"):
        m.upstream_error(kind)
    m.upstream_error("rate_limit_error")
    m.upstream_retry("429")
    m.stream_started()
    m.stream_started()
    m.stream_finished()
    m.rate_limited("key-1")

    text = m.render()
    samples, types = parse(text)
    s = "claude-sonnet-4-5"
    route = "/v1/messages"
    assert sample(samples, "ora_requests_total", route=route, model=s, status="200") == 2
    assert sample(samples, "ora_requests_total", route=route, model=s, status="529") == 1
    assert types["ora_request_duration_seconds"] == "histogram"
    assert sample(samples, "ora_request_duration_seconds_count", route=route) == 3
    assert sample(samples, "ora_request_duration_seconds_bucket", route=route, le="0.0025") == 1
    assert sample(samples, "ora_request_duration_seconds_bucket", route=route, le="0.5") == 2
    assert sample(samples, "ora_request_duration_seconds_bucket", route=route, le="+Inf") == 3
    assert sample(samples, "ora_time_to_first_token_seconds_count", model=s) == 1
    assert sample(samples, "ora_tokens_total", model=s, kind="input") == 1210
    assert sample(samples, "ora_tokens_total", model=s, kind="output") == 345
    assert sample(samples, "ora_tokens_total", model=s, kind="cache_read") == 1000
    assert sample(samples, "ora_tokens_total", model=s, kind="cache_creation") == 7
    assert sample(samples, "ora_cost_usd_total", model=s) == pytest.approx(0.02)
    assert sample(samples, "ora_upstream_errors_total", type="rate_limit_error") == 2
    assert sample(samples, "ora_upstream_errors_total", type="connection") == 1
    assert sample(samples, "ora_upstream_retries_total", reason="429") == 1
    assert sample(samples, "ora_streams_in_flight") == 1
    assert types["ora_streams_in_flight"] == "gauge"
    assert sample(samples, "ora_rate_limited_total", key="key-1") == 1
    assert sample(samples, "ora_build_info", version="9.9.9") == 1
    assert sample(samples, "ora_process_resident_memory_bytes") > 1_000_000
    assert 0 <= sample(samples, "ora_uptime_seconds") < 60
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), name


def test_default_build_version_and_buckets() -> None:
    samples, _ = parse(GatewayMetrics().render())
    assert sample(samples, "ora_build_info", version=__version__) == 1
    assert DURATION_BUCKETS[0] == 0.001 and DURATION_BUCKETS[-1] == 600


def test_prometheus_client_parser_accepts_the_output() -> None:
    from prometheus_client import parser  # dev dependency: the reference parser
    m = GatewayMetrics()
    m.request_finished("/v1/messages", 'we"ird\\model\n', 200, 0.3)
    m.first_token("x", 0.2)
    m.tokens("x", 1, 2, 3, 4)
    families = {f.name: f for f in parser.text_string_to_metric_families(m.render())}
    assert "ora_request_duration_seconds" in families


def test_observations_are_cheap() -> None:
    m = GatewayMetrics()
    n = 20_000
    per_call = (
        min(
            timeit.repeat(
                lambda: m.request_finished("/v1/messages", "claude-sonnet-4-5", 200, 0.42),
                number=n,
                repeat=3,
            )
        )
        / n
    )
    # ~0.6 us on a laptop-class CPU; the bound is loose so slow CI machines pass.
    assert per_call < 20e-6
