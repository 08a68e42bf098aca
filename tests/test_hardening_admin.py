"""Hardening: the admin surface (debug error store, detailed health, metrics), the access
log, and that no secret (upstream key, client keys, admin key) ever leaks out of them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx2
import orjson
import pytest

from conftest import MODEL, message_body, parse_sse, wait_for
from openrouter_anthropic import __version__
from openrouter_anthropic.fake_upstream import FakeOpenRouter, MidstreamError, Reply
from openrouter_anthropic.observability import JSONFormatter
from redis_server import free_port

UPSTREAM_SECRET = "sk-or-v1-upstreamsecret0123456789abcdef"
CLIENT_SECRET = "client-secret-key-4f9a2c"
OTHER_CLIENT_SECRET = "client-secret-key-77b1e0"
ADMIN_SECRET = "admin-secret-key-c0ffee"
SECRETS = (UPSTREAM_SECRET, CLIENT_SECRET, OTHER_CLIENT_SECRET, ADMIN_SECRET)


def admin_gateway(make_gateway: Callable[..., str], **extra: Any) -> str:
    return make_gateway(openrouter_api_key=UPSTREAM_SECRET,
                        proxy_api_keys=(CLIENT_SECRET, OTHER_CLIENT_SECRET),
                        admin_api_key=ADMIN_SECRET, debug_endpoints=True, **extra)


def client_post(http: httpx2.Client, body: dict[str, Any]) -> httpx2.Response:
    return http.post("/v1/messages", json=body, headers={"x-api-key": CLIENT_SECRET})


def admin_get(http: httpx2.Client, path: str) -> httpx2.Response:
    return http.get(path, headers={"x-api-key": ADMIN_SECRET})


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} leaks a secret ({secret[:8]}...): {text[:500]}"


def assert_none_leak(outputs: list[tuple[str, str]]) -> None:
    leaks = [(where, text[:300]) for where, text in outputs
             if any(secret in text for secret in SECRETS)]
    assert not leaks, f"{len(leaks)} output(s) leak a secret: {leaks}"


# ---------------------------------------------------------------- debug endpoints

def test_debug_endpoints_are_404_when_off(make_gateway: Callable[..., str],
                                          gateway_url: str) -> None:
    with httpx2.Client(base_url=gateway_url, timeout=10.0) as http:
        for path in ("/debug/errors/recent", "/debug/errors/stats", "/debug/errors/req_x"):
            assert http.get(path).status_code == 404
    # An admin key alone does not switch them on.
    url = make_gateway(admin_api_key=ADMIN_SECRET)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        resp = admin_get(http, "/debug/errors/recent")
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "not_found_error"


def test_debug_endpoints_need_the_admin_key(make_gateway: Callable[..., str],
                                            fake: FakeOpenRouter) -> None:
    url = admin_gateway(make_gateway)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        for headers in ({}, {"x-api-key": CLIENT_SECRET}, {"x-api-key": "wrong"},
                        {"authorization": f"Bearer {CLIENT_SECRET}"}):
            resp = http.get("/debug/errors/recent", headers=headers)
            assert resp.status_code == 401, (headers, resp.text)
            assert resp.json()["error"]["type"] == "authentication_error"
        assert admin_get(http, "/debug/errors/recent").status_code == 200
        bearer = http.get("/debug/errors/stats",
                          headers={"authorization": f"Bearer {ADMIN_SECRET}"})
        assert bearer.status_code == 200


def test_error_store_records_failed_requests(make_gateway: Callable[..., str],
                                             fake: FakeOpenRouter) -> None:
    url = admin_gateway(make_gateway)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        before = admin_get(http, "/debug/errors/stats").json()
        failed = client_post(http, message_body(model="no-such-model"))
        assert failed.status_code == 404
        request_id = failed.headers["request-id"]
        assert wait_for(lambda: admin_get(http, f"/debug/errors/{request_id}").status_code
                        == 200)
        entry = admin_get(http, f"/debug/errors/{request_id}").json()
        recent = admin_get(http, "/debug/errors/recent").json()["data"]
        stats = admin_get(http, "/debug/errors/stats").json()
        missing = admin_get(http, "/debug/errors/req_doesnotexist")
        bad_limit = admin_get(http, "/debug/errors/recent?limit=0")
    assert entry["correlation_id"] == request_id
    assert entry["status"] == 404
    assert entry["error_type"] == "not_found_error"
    assert "no-such-model" in entry["message"]
    assert any(e["correlation_id"] == request_id for e in recent)
    assert stats["total_recorded"] == before["total_recorded"] + 1
    assert stats["by_status"].get("404", 0) >= 1
    assert stats["by_error_type"].get("not_found_error", 0) >= 1
    assert missing.status_code == 404
    assert bad_limit.status_code == 400


def exercise_and_collect(http: httpx2.Client, fake: FakeOpenRouter,
                         caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """Errors of every kind, a success, then every admin output and log line."""
    outputs: list[tuple[str, str]] = []
    for body in (message_body(), message_body(), message_body(model="no-such-model"),
                 message_body(max_tokens="many")):
        resp = client_post(http, body)
        assert resp.status_code >= 400, resp.text
        outputs.append((f"error body {resp.status_code}", resp.text))
    for headers in ({"x-api-key": "wrong-key"}, {}, {"authorization": "Bearer nope-nope"}):
        resp = http.post("/v1/messages", json=message_body(), headers=headers)
        assert resp.status_code == 401
        outputs.append(("auth error body", resp.text))
    ok = client_post(http, message_body())
    assert ok.status_code == 200, ok.text
    outputs.append(("ok body", ok.text))
    assert wait_for(lambda: admin_get(http, "/debug/errors/stats").json()["size"] >= 7)
    for path in ("/debug/errors/recent?limit=500", "/debug/errors/stats", "/metrics"):
        resp = admin_get(http, path)
        assert resp.status_code == 200, (path, resp.text)
        outputs.append((path, resp.text))
    health = http.get("/health/detailed", headers={"x-api-key": CLIENT_SECRET})
    assert health.status_code == 200, health.text
    outputs.append(("/health/detailed", health.text))
    for entry in admin_get(http, "/debug/errors/recent").json()["data"]:
        one = admin_get(http, f"/debug/errors/{entry['correlation_id']}")
        outputs.append((f"/debug/errors/{entry['correlation_id']}", one.text))
    assert wait_for(lambda: len(access_records(caplog)) >= 8)
    formatter = JSONFormatter()
    for record in list(caplog.records):
        outputs.append((f"log {record.name}", formatter.format(record)))
    return outputs


def test_secrets_never_leak(make_gateway: Callable[..., str], fake: FakeOpenRouter,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="openrouter_anthropic")
    url = admin_gateway(make_gateway, access_log=True)
    fake.script(Reply(status=401), Reply(status=500, error_message="provider crashed"))
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        outputs = exercise_and_collect(http, fake, caplog)
    # The upstream really got the key: it is a secret worth guarding.
    assert fake.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert_none_leak(outputs)


def test_upstream_echoing_the_key_does_not_leak_it(make_gateway: Callable[..., str],
                                                   fake: FakeOpenRouter,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Some providers quote the key they were given in a 401; the gateway must not relay
    its own upstream key to a client (the error store already scrubs it)."""
    caplog.set_level(logging.DEBUG, logger="openrouter_anthropic")
    url = admin_gateway(make_gateway, access_log=True)
    fake.script(Reply(status=401, error_message=f"Invalid API key: {UPSTREAM_SECRET}"),
                Reply(status=500, error_message=f"crash, auth was Bearer {UPSTREAM_SECRET}"))
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        outputs = exercise_and_collect(http, fake, caplog)
        fake.script(Reply(text="partial answer before the error", midstream_error=MidstreamError(
            code=502, message=f"provider rejected key {UPSTREAM_SECRET}")))
        with http.stream("POST", "/v1/messages", json=message_body(stream=True),
                         headers={"x-api-key": CLIENT_SECRET}) as resp:
            raw = resp.read().decode()
        assert parse_sse(raw)[-1][0] == "error"
        outputs.append(("mid-stream error event", raw))
        stream_id = resp.headers["request-id"]
        assert wait_for(lambda: any(r["request_id"] == stream_id
                                    for r in access_records(caplog)))
    formatter = JSONFormatter()
    outputs.extend((f"log {r.name}", formatter.format(r)) for r in list(caplog.records))
    assert_none_leak(outputs)


# ---------------------------------------------------------------- health

def test_health_detailed_reports_upstream_and_config(make_gateway: Callable[..., str],
                                                     fake: FakeOpenRouter) -> None:
    url = admin_gateway(make_gateway)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        resp = http.get("/health/detailed", headers={"x-api-key": CLIENT_SECRET})
        live = http.get("/health")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == "ok"
    assert data["version"] == __version__
    assert isinstance(data["uptime_seconds"], int | float) and data["uptime_seconds"] >= 0
    assert data["upstream"]["reachable"] is True
    assert data["upstream"]["base_url"] == fake.base_url
    config = data["config"]
    assert config["openrouter_api_key"] == "set"
    assert config["admin_api_key"] == "set"
    assert config["proxy_api_keys"] == 2
    assert config["big_model"] == "anthropic/claude-sonnet-4"
    assert_no_secret(resp.text, "/health/detailed")


def test_health_detailed_with_a_dead_upstream_is_degraded(
    make_gateway: Callable[..., str], fake: FakeOpenRouter
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v1"
    url = make_gateway(openrouter_base_url=dead, connect_timeout=1.0)
    with httpx2.Client(base_url=url, timeout=15.0) as http:
        resp = http.get("/health/detailed")
        live = http.get("/health")
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == "degraded"
    assert data["upstream"]["reachable"] is False
    assert data["upstream"].get("error")
    assert live.status_code == 200  # liveness does not depend on the upstream


# ---------------------------------------------------------------- metrics

def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample whose labels include `labels`."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def test_metrics_after_ok_error_and_stream(make_gateway: Callable[..., str],
                                           fake: FakeOpenRouter) -> None:
    url = make_gateway()
    fake.script(Reply(text="priced answer", usage={"prompt_tokens": 100,
                                                  "completion_tokens": 20, "cost": 0.0125}),
                Reply(text="streamed answer here", usage={"prompt_tokens": 50,
                                                           "completion_tokens": 5,
                                                           "cost": 0.0005}))
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        assert http.post("/v1/messages", json=message_body()).status_code == 200
        assert http.post("/v1/messages",
                         json=message_body(model="no-such-model")).status_code == 404
        with http.stream("POST", "/v1/messages", json=message_body(stream=True)) as resp:
            events = parse_sse(resp.read().decode())
        assert events[-1][0] == "message_stop"

        def scrape() -> str:
            got = http.get("/metrics")
            assert got.status_code == 200
            assert got.headers["content-type"].startswith("text/plain")
            return got.text

        route = "/v1/messages"
        assert wait_for(lambda: sample(scrape(), "ora_requests_total", route=route,
                                       model=MODEL, status="200") == 2)
        text = scrape()
    assert sample(text, "ora_requests_total", route=route, status="404") == 1
    assert sample(text, "ora_tokens_total", model=MODEL, kind="input") == 150
    assert sample(text, "ora_tokens_total", model=MODEL, kind="output") == 25
    cost = sample(text, "ora_cost_usd_total", model=MODEL)
    assert cost is not None and abs(cost - 0.013) < 1e-9
    assert (sample(text, "ora_time_to_first_token_seconds_count", model=MODEL) or 0) >= 1
    assert sample(text, "ora_streams_in_flight") == 0
    assert (sample(text, "ora_request_duration_seconds_count", route=route) or 0) >= 3


def test_metrics_need_the_admin_key_when_one_is_set(make_gateway: Callable[..., str]) -> None:
    url = make_gateway(admin_api_key=ADMIN_SECRET)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        assert http.get("/metrics").status_code == 401
        assert admin_get(http, "/metrics").status_code == 200


# ---------------------------------------------------------------- access log

def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JSONFormatter()
    return [orjson.loads(formatter.format(r)) for r in list(caplog.records)
            if r.name == "openrouter_anthropic.access"]


def test_access_log_one_json_line_per_request(make_gateway: Callable[..., str],
                                              fake: FakeOpenRouter,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openrouter_anthropic")
    url = make_gateway(access_log=True)
    fake.script(Reply(text="logged", usage={"prompt_tokens": 30, "completion_tokens": 4}))
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        ok = http.post("/v1/messages", json=message_body())
        missing = http.post("/v1/messages", json=message_body(model="no-such-model"))
        with http.stream("POST", "/v1/messages", json=message_body(stream=True)) as streamed:
            streamed.read()
    ids = {r.headers["request-id"]: r.status_code for r in (ok, missing, streamed)}
    assert len(ids) == 3
    assert wait_for(lambda: {r["request_id"] for r in access_records(caplog)} >= set(ids))
    records = access_records(caplog)
    for request_id, status in ids.items():
        mine = [r for r in records if r["request_id"] == request_id]
        assert len(mine) == 1, mine
        line = mine[0]
        assert line["status"] == status
        assert isinstance(line["latency_ms"], int | float) and line["latency_ms"] >= 0
        assert line["method"] == "POST" and line["path"] == "/v1/messages"
        assert line["level"] == "info"
    ok_line = next(r for r in records if r["request_id"] == ok.headers["request-id"])
    assert ok_line["model"] == MODEL
    assert ok_line["upstream_model"] == "anthropic/claude-sonnet-4"
    assert ok_line["usage"]["input_tokens"] == 30
    assert ok_line["usage"]["output_tokens"] == 4
    stream_line = next(r for r in records if r["request_id"] == streamed.headers["request-id"])
    assert stream_line["usage"]["output_tokens"] > 0
    assert stream_line["upstream_model"] == "anthropic/claude-sonnet-4"



def test_unknown_model_errors_name_the_requested_model(
    make_gateway: Callable[..., str], fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """A 404 for an unknown model is the error an operator most needs to trace to the model
    the client asked for: the error store, the access log and the metrics must all say it."""
    caplog.set_level(logging.INFO, logger="openrouter_anthropic")
    url = make_gateway(admin_api_key=ADMIN_SECRET, debug_endpoints=True, access_log=True)
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        missing = http.post("/v1/messages", json=message_body(model="no-such-model"))
        assert missing.status_code == 404
        request_id = missing.headers["request-id"]
        assert wait_for(lambda: any(r["request_id"] == request_id
                                    for r in access_records(caplog)))
        entry = admin_get(http, f"/debug/errors/{request_id}").json()
        metrics = admin_get(http, "/metrics").text
    line = next(r for r in access_records(caplog) if r["request_id"] == request_id)
    assert line.get("model") == "no-such-model", line
    assert entry["model"] == "no-such-model", entry
    assert sample(metrics, "ora_requests_total", route="/v1/messages", model="no-such-model",
                  status="404") == 1


def test_no_access_log_by_default(make_gateway: Callable[..., str], fake: FakeOpenRouter,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openrouter_anthropic")
    url = make_gateway()
    with httpx2.Client(base_url=url, timeout=10.0) as http:
        assert http.post("/v1/messages", json=message_body()).status_code == 200
        assert http.get("/health").status_code == 200
    assert not access_records(caplog)
