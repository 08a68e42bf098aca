"""Message Batches, the pure parts: `batches.*` config, the create envelope, wire shapes,
ids, per-request params validation and the retry backoff."""

from __future__ import annotations

import time
from datetime import datetime

import orjson
import pytest

from openrouter_anthropic.batches.config import BatchConfig, parse_duration, parse_size
from openrouter_anthropic.batches.envelope import parse_requests
from openrouter_anthropic.batches.store import InvalidParams
from openrouter_anthropic.batches.wire import (
    BatchRow,
    errored_result,
    message_batch,
    new_batch_id,
    result_line,
    rfc3339,
    succeeded_result,
)
from openrouter_anthropic.batches.work import backoff, check_params
from openrouter_anthropic.errors import InvalidRequest
from openrouter_anthropic.gateway import Gateway
from openrouter_anthropic.profiles import Profiles
from openrouter_anthropic.routing import Router
from openrouter_anthropic.settings import Settings, SettingsError
from openrouter_anthropic.upstream.openrouter import OpenRouterUpstream

# ---------------------------------------------------------------- config


def test_config_defaults_match_the_issue() -> None:
    config = BatchConfig.from_mapping({})
    assert (config.executor, config.chunk_size, config.concurrency, config.max_attempts) == (
        "local", 100, 8, 5)
    assert config.expire_after == 24 * 3600
    assert config.results_retention == 29 * 86400
    assert config.max_requests == 100_000
    assert config.max_body_bytes == 256 * 2**20
    assert config.database_url.startswith("sqlite:///") and config.is_sqlite
    assert config.sqlite_path.name == "batches.db"


def test_config_durations_sizes_and_errors() -> None:
    config = BatchConfig.from_mapping({"expire_after": "2s", "results_retention": "29d",
                                       "lease": "500ms", "poll_interval": 0.2,
                                       "max_body_bytes": "1MiB", "executor": "prefect",
                                       "database_url": "postgresql+asyncpg://u@h/db"})
    assert (config.expire_after, config.results_retention, config.lease) == (2, 29 * 86400,
                                                                              0.5)
    assert config.max_body_bytes == 2**20 and not config.is_sqlite
    assert parse_duration("1.5h") == 5400 and parse_size("256MB") == 256 * 10**6
    for bad in ({"chunksize": 3}, {"executor": "celery"}, {"chunk_size": 0},
                {"expire_after": "soon"}, {"database_url": "mysql://x"},
                {"concurrency": 2.5}, {"retry_base_delay": 10, "retry_max_delay": 1},
                {"database_url": "sqlite://rel.db"}):
        with pytest.raises(SettingsError):
            BatchConfig.from_mapping(bad)


def test_prefect_executor_needs_an_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(SettingsError, match="PREFECT_API_URL"):
        BatchConfig.from_mapping({"executor": "prefect"}).check_environment()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    BatchConfig.from_mapping({"executor": "prefect"}).check_environment()


# ---------------------------------------------------------------- the create envelope


def test_envelope_keeps_params_as_sent() -> None:
    params = {"model": "m", "max_tokens": 0, "messages": [], "unknown": {"x": 1}}
    out = parse_requests({"requests": [{"custom_id": "a-1_B", "params": params}]}, 10)
    assert out[0].custom_id == "a-1_B" and orjson.loads(out[0].params) == params


@pytest.mark.parametrize(("body", "message"), [
    ({}, "requests: Field required"),
    ({"requests": {}}, "requests: Input should be a valid list"),
    ({"requests": []}, "requests: List should have at least 1 item"),
    ({"requests": [{"custom_id": "a", "params": {}}] * 4}, "at most 3 items"),
    ({"requests": ["x"]}, "requests.0: Input should be a valid dictionary"),
    ({"requests": [{"params": {}}]}, "requests.0.custom_id: Field required"),
    ({"requests": [{"custom_id": "a b", "params": {}}]}, "String should match pattern"),
    ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "String should match pattern"),
    ({"requests": [{"custom_id": "", "params": {}}]}, "String should match pattern"),
    ({"requests": [{"custom_id": 7, "params": {}}]}, "String should match pattern"),
    ({"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
     "requests.1.custom_id: duplicate custom_id 'a'"),
    ({"requests": [{"custom_id": "a"}]}, "requests.0.params: Field required"),
    ({"requests": [{"custom_id": "a", "params": []}]}, "Input should be a valid dictionary"),
])
def test_envelope_refusals(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_requests(body, 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- wire shapes and ids


def test_batch_ids_sort_by_creation_time() -> None:
    ids = [new_batch_id(1_700_000_000 + i) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(i.startswith("msgbatch_01") and len(i) == 35 for i in ids)


def test_message_batch_shape() -> None:
    now = time.time()
    row = BatchRow("msgbatch_x", "key_1", "ended", 3, 0, 1, 1, 1, 0, now, now + 86400,
                   now + 5, None, None)
    wire = message_batch(row, "https://gw.example")
    assert list(wire) == ["id", "type", "processing_status", "request_counts", "ended_at",
                          "created_at", "expires_at", "archived_at", "cancel_initiated_at",
                          "results_url"]
    assert wire["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 1,
                                      "canceled": 1, "expired": 0}
    assert wire["results_url"] == "https://gw.example/v1/messages/batches/msgbatch_x/results"
    created = datetime.fromisoformat(wire["created_at"].replace("Z", "+00:00"))
    assert abs(created.timestamp() - now) < 1e-3 and wire["created_at"].endswith("Z")
    in_progress = message_batch(BatchRow(*("msgbatch_y", "k", "in_progress", 1, 1, 0, 0, 0, 0,
                                           now, now, None, None, None)), "http://h")
    assert in_progress["results_url"] is None and in_progress["ended_at"] is None
    assert rfc3339(None) is None


def test_result_lines() -> None:
    lines = [result_line("a", "succeeded", succeeded_result({"id": "msg_1"})),
             result_line("b", "errored", errored_result("api_error", "boom")),
             result_line("c", "canceled", None), result_line("d", "expired", None)]
    decoded = [orjson.loads(line) for line in lines]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert decoded[0] == {"custom_id": "a", "result": {"type": "succeeded",
                                                       "message": {"id": "msg_1"}}}
    assert decoded[1]["result"] == {"type": "errored", "error": {
        "type": "error", "error": {"type": "api_error", "message": "boom"}}}
    assert [d["result"] for d in decoded[2:]] == [{"type": "canceled"}, {"type": "expired"}]


# ---------------------------------------------------------------- params, at processing time


@pytest.fixture
def gateway() -> Gateway:
    settings = Settings(fetch_model_list=False, max_retries=0)
    return Gateway(settings, OpenRouterUpstream("http://127.0.0.1:9", ""),
                   Router(settings.big_model, settings.small_model, {}, {}), Profiles())


def _params(**overrides: object) -> bytes:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}], **overrides}
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize(("overrides", "error_type", "message"), [
    ({"max_tokens": None}, "invalid_request_error", "max_tokens: Field required"),
    ({"max_tokens": 0}, "invalid_request_error", "greater than or equal to 1"),
    ({"messages": []}, "invalid_request_error", "messages: List should have at least 1"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "invalid_request_error", "role"),
    ({"model": None}, "invalid_request_error", "model: Field required"),
    ({"model": "no-such-model"}, "not_found_error", "no-such-model"),
])
def test_invalid_params(gateway: Gateway, overrides: dict[str, object], error_type: str,
                        message: str) -> None:
    checked = check_params(gateway, _params(**overrides))
    assert isinstance(checked, InvalidParams)
    assert checked.error_type == error_type and message in checked.message


def test_valid_params_drop_stream(gateway: Gateway) -> None:
    checked = check_params(gateway, _params(stream=True, temperature=0.2))
    assert isinstance(checked, dict) and "stream" not in checked
    assert checked["temperature"] == 0.2


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    for attempt, top in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 60.0)):
        waits = [backoff(attempt, 1.0, 60.0) for _ in range(200)]
        assert all(top / 2 <= w <= top for w in waits) and len(set(waits)) > 100
