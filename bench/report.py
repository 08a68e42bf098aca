"""The results as a plain-text table (gateway vs. direct upstream and vs. the minimal
forwarder, with ratios) and the pass/fail list of the issue's targets."""

from __future__ import annotations

import math
from typing import Any

JSON = dict[str, Any]
Row = tuple[str, dict[str, float | None]]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if 0 < abs(value) < 0.1:
        return f"{value:.3f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}x"


def _per_core(v: JSON) -> float | None:
    us = v.get("server_cpu_us_per_req", v.get("fake_cpu_us_per_req"))
    return 1e6 / us if us else None


def _load_rows(result: JSON) -> list[Row]:
    rows: list[Row] = []
    for key, per_target in result["load"].items():
        label = key.replace("_", " ")
        rows.append((f"{label}: replies/s", {n: v["rps"] for n, v in per_target.items()}))
        rows.append((f"{label}: p50 ms", {n: v["p50_ms"] for n, v in per_target.items()}))
        rows.append((f"{label}: p99 ms", {n: v["p99_ms"] for n, v in per_target.items()}))
        rows.append((f"{label}: server CPU us/reply",
                     {n: v.get("server_cpu_us_per_req", v.get("fake_cpu_us_per_req"))
                      for n, v in per_target.items()}))
        rows.append((f"{label}: replies/s per server core",
                     {n: _per_core(v) for n, v in per_target.items()}))
        rows.append((f"{label}: server write syscalls per reply",
                     {n: v.get("server_writes_per_reply") for n, v in per_target.items()}))
        rows.append((f"{label}: server read syscalls per reply",
                     {n: v.get("server_reads_per_reply") for n, v in per_target.items()}))
        rows.append((f"{label}: new upstream connections per reply",
                     {n: v.get("upstream_connections_per_reply") for n, v in per_target.items()}))
        rows.append((f"{label}: other load on the box, cores",
                     {n: v.get("other_load_cores") for n, v in per_target.items()}))
    return rows


def _latency_rows(result: JSON) -> list[Row]:
    lat = result["latency_1conn"]
    rows: list[Row] = []
    for key, label in (("plain_p50_ms", "1 conn sequential: plain p50 ms"),
                       ("plain_p99_ms", "1 conn sequential: plain p99 ms"),
                       ("stream_p50_ms", "1 conn sequential: stream (to last byte) p50 ms"),
                       ("ttft_p50_ms", "1 conn sequential: time to first token p50 ms"),
                       ("ttft_p99_ms", "1 conn sequential: time to first token p99 ms"),
                       ("added_plain_p50_ms", "added latency, plain p50 ms"),
                       ("added_stream_p50_ms", "added latency, stream p50 ms"),
                       ("ttft_overhead_p50_ms", "TTFT overhead p50 ms")):
        rows.append((label, {n: v.get(key) for n, v in lat.items()}))
    return rows


def _other_rows(result: JSON) -> list[Row]:
    """Per-chunk CPU, memory and start-up: one row per figure, one value per target."""
    merged: dict[str, dict[str, float | None]] = {}
    for name, pc in result.get("per_chunk", {}).items():
        merged.setdefault("stream 200 chunks: marginal CPU us/chunk", {})[name] = \
            pc["marginal_cpu_us_per_chunk"]
        merged.setdefault("stream 200 chunks, paced: CPU us/chunk", {})[name] = \
            pc["paced_cpu_us_per_chunk"]
    for name, mem in result["memory"].items():
        for key, label in (("idle_rss_mb", "RSS idle MB"),
                           ("peak_rss_mb", f"RSS peak, {mem.get('streams')} streams MB"),
                           ("idle_after_load_rss_mb", "RSS idle after load MB")):
            merged.setdefault(label, {})[name] = mem.get(key)
    for name, times in result["startup"].items():
        merged.setdefault("start to ready s (median)", {})[name] = \
            sorted(times)[len(times) // 2]
    return list(merged.items())


# Context rows: a ratio to the direct run means nothing for these.
_NO_RATIO = ("new upstream connections", "other load")


# The ratio columns: (numerator, denominator), each placed after its numerator's column,
# except gateway/forwarder, placed after the forwarder's.
_RATIOS = (("gateway", "direct"), ("gateway", "forwarder"), ("litellm", "direct"))


def _columns(names: list[str]) -> list[tuple[str, str | None]]:
    """(target, None) for a figure column, (numerator, denominator) for a ratio column."""
    cols: list[tuple[str, str | None]] = []
    for name in names:
        cols.append((name, None))
        for num, den in _RATIOS:
            if den in names and num in names and name == (num if den == "direct" else den):
                cols.append((num, den))
    return cols


def _render(rows: list[Row], names: list[str]) -> str:
    cols = _columns(names)
    header = ["figure"] + [num if den is None else f"{num}/{den}" for num, den in cols]
    table = [header]
    for label, values in rows:
        plain = any(marker in label for marker in _NO_RATIO)
        line = [label]
        for num, den in cols:
            if den is None:
                line.append(_fmt(values.get(num)))
            else:
                line.append("" if plain else _ratio(values.get(num), values.get(den)))
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out = []
    for i, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                      strict=True)]
        out.append("  ".join(cells))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _names(result: JSON) -> list[str]:
    return [n for n in ("direct", "gateway", "forwarder", "litellm")
            if n in result["latency_1conn"]]


def ratios(result: JSON) -> JSON:
    """The ratio columns of the table, for the JSON: {figure: {"gateway/direct": x, ...}}."""
    names = _names(result)
    out: JSON = {}
    for label, values in _latency_rows(result) + _load_rows(result) + _other_rows(result):
        if any(marker in label for marker in _NO_RATIO):
            continue
        row: JSON = {}
        for num, den in _columns(names):
            if den is None:
                continue
            a, b = values.get(num), values.get(den)
            if a is not None and b and not math.isnan(a) and not math.isnan(b):
                row[f"{num}/{den}"] = round(a / b, 4)
        if row:
            out.setdefault(label, {}).update(row)
    return out


def _translation(result: JSON) -> str:
    req = result["translation"]["request_1mb"]
    resp = result["translation"]["stream_200_chunks"]
    return (f"translation, in process: {req['body_bytes'] / 1e6:.2f} MB conversation "
            f"({req['messages']} turns): build_chat_request {req['translate_ms_p50']:.2f} ms "
            f"p50; with JSON parse + upstream serialization {req['total_ms_p50']:.2f} ms. "
            f"200-chunk stream (SSE decode + translate + encode): "
            f"{resp['per_chunk_us']:.1f} us/chunk")


def _workers(result: JSON) -> str:
    w = result.get("workers")
    if not w:
        return ""
    parts = []
    for kind in ("plain", "stream"):
        s = w[kind]
        parts.append(f"{kind} {s['rps']:,.0f}/s (p99 {s['p99_ms']:.1f} ms), "
                     f"{s['busy_processes']} busy processes, {s['cores_used']:.2f} cores, "
                     f"CPU s by process {s['cpu_s_by_process']}")
    problems = w.get("problems", {}).get("count", 0)
    return (f"serve --workers {w['workers']}: ready {w['ready_s']:.2f} s, idle RSS "
            f"{w['idle_rss_mb']:.0f} MB (all processes); " + "; ".join(parts)
            + f"; log: {problems} warnings/errors")


def _floor(result: JSON) -> str:
    """The forwarder against the issue's figures for a minimal aiohttp + orjson forwarder."""
    c = max(result["config"]["connections"])
    load = result["load"]
    if "forwarder" not in load[f"plain_c{c}"]:
        return ""
    plain = load[f"plain_c{c}"]["forwarder"]["rps"]
    stream = load[f"stream_c{c}"]["forwarder"]["rps"]
    mem = result["memory"]["forwarder"]
    times = result["startup"]["forwarder"]
    return (f"python floor (minimal forwarder), {c} connections: plain {plain:,.0f}/s, "
            f"streamed {stream:,.0f}/s, idle RSS {mem['idle_rss_mb']:.0f} MB, ready "
            f"{sorted(times)[len(times) // 2]:.2f} s (the issue: ~4,700/s, ~2,300/s, 40 MB)")


def targets(result: JSON) -> list[tuple[str, bool, str]]:
    """The issue's targets for this machine: (what, met, measured)."""
    c = max(result["config"]["connections"])
    load = result["load"]
    gw = "gateway"
    plain = load[f"plain_c{c}"][gw]["rps"]
    stream = load[f"stream_c{c}"][gw]["rps"]
    added = result["latency_1conn"][gw]["added_plain_p50_ms"]
    translate = result["translation"]["request_1mb"]["translate_ms_p50"]
    idle = result["memory"][gw]["idle_rss_mb"]
    ready = sorted(result["startup"][gw])[len(result["startup"][gw]) // 2]
    out = [
        (f"non-streaming >= 2,500 req/s at {c} connections", plain >= 2500, f"{plain:,.0f}"),
        (f"streaming >= 1,200 replies/s at {c} connections", stream >= 1200, f"{stream:,.0f}"),
        ("added p50 latency <= 1 ms at 1 connection", added <= 1.0, f"{added:.3f} ms"),
        ("1 MB conversation translated in <= 15 ms", translate <= 15, f"{translate:.2f} ms"),
        ("idle RSS <= 120 MB", idle <= 120, f"{idle:.0f} MB"),
        ("ready in <= 2 s", ready <= 2, f"{ready:.2f} s"),
    ]
    w = result.get("workers")
    if w:
        busy = min(w["plain"]["busy_processes"], w["stream"]["busy_processes"])
        out.append((f"serve --workers {w['workers']} uses several cores", busy >= 2,
                    f"{busy} busy worker processes, {w['plain']['cores_used']:.2f} cores"))
    return out


NOISY_CORES = 0.2


def _noisy(result: JSON) -> list[str]:
    return [f"{key} ({name})" for key, per_target in result["load"].items()
            for name, v in per_target.items() if v.get("other_load_cores", 0) >= NOISY_CORES]


def table(result: JSON) -> str:
    names = _names(result)
    rows = _latency_rows(result) + _load_rows(result) + _other_rows(result)
    m = result["machine"]
    cfg = result["config"]
    lines = [
        f"machine: {m['cpus']} x {m['cpu_model']}, {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['wrk'] or 'no wrk'}; source {m.get('source')}; "
        f"other load at start {m.get('other_load_at_start_cores', 0):.2f} cores",
        f"load generator: {cfg['generator']}; {cfg['duration_s']:g} s per run; streamed "
        f"replies have {cfg['chunks']} content chunks; x/direct = figure / direct upstream, "
        "gateway/forwarder = gateway / minimal aiohttp forwarder",
        "",
        _render(rows, names),
        "",
        _translation(result),
    ]
    if workers := _workers(result):
        lines.append(workers)
    if floor := _floor(result):
        lines.append(floor)
    noisy = _noisy(result)
    if noisy:
        lines.append(f"WARNING: other processes used >= {NOISY_CORES} cores during: "
                     f"{', '.join(noisy)}; those figures understate this code")
    for name, problems in result["problems"].items():
        lines.append(f"{name.replace('_', ' ')}: {problems['count']} warnings/errors")
    lines.append("")
    lines.append("targets:")
    lines += [f"  [{'PASS' if ok else 'FAIL'}] {what}: {got}" for what, ok, got in
              targets(result)]
    if "profile" in result:
        from .profile import format_summary

        for name, summary in result["profile"].items():
            lines += ["", format_summary(f"py-spy, gateway, {name}", summary)]
    return "\n".join(lines)
