"""The bounded in-memory error store behind /debug/errors/*."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from openrouter_anthropic.errorstore import REDACTED, ErrorStore, make_scrubber, scrub

UPSTREAM_KEY = "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
CLIENT_KEY = "my-gateway-client-key-42"


def fake_clock(start: float = 1_700_000_000.0) -> Any:
    ticks = itertools.count()
    return lambda: start + next(ticks)


def record(store: ErrorStore, cid: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "status": 529,
        "error_type": "overloaded_error",
        "message": "Overloaded",
        "route": "/v1/messages",
        "model": "claude-sonnet-4-5",
    }
    args.update(kw)
    return store.record(cid, **args)


def test_record_and_get() -> None:
    store = ErrorStore(clock=fake_clock())
    entry = record(store, "req_1", upstream_status=503, detail={"provider": "X"})
    got = store.get("req_1")
    assert got == entry
    assert got is not None
    assert got["correlation_id"] == "req_1"
    assert got["status"] == 529
    assert got["error_type"] == "overloaded_error"
    assert got["upstream_status"] == 503
    assert got["detail"] == {"provider": "X"}
    assert got["timestamp"] == 1_700_000_000.0
    assert got["time"] == "2023-11-14T22:13:20.000Z"
    assert store.get("missing") is None
    orjson.dumps(store.recent())  # JSON-ready
    orjson.dumps(store.stats())


def test_recent_is_newest_first_and_limited() -> None:
    store = ErrorStore()
    for i in range(10):
        record(store, f"req_{i}")
    assert [e["correlation_id"] for e in store.recent(3)] == ["req_9", "req_8", "req_7"]
    assert len(store.recent()) == 10
    assert store.recent(0) == []
    # copies: callers cannot corrupt the store
    store.recent(1)[0]["status"] = 200
    assert store.recent(1)[0]["status"] == 529


def test_capacity_evicts_oldest() -> None:
    store = ErrorStore(capacity=3)
    for i in range(5):
        record(store, f"req_{i}", status=500 + i, error_type=f"t{i}", model=f"m{i}")
    assert len(store) == 3
    assert [e["correlation_id"] for e in store.recent()] == ["req_4", "req_3", "req_2"]
    assert store.get("req_0") is None
    assert store.get("req_1") is None
    assert store.get("req_2") is not None
    stats = store.stats()
    assert stats["size"] == 3
    assert stats["capacity"] == 3
    assert stats["total_recorded"] == 5
    assert stats["evicted"] == 2
    # counts describe the held window: evicted entries are subtracted
    assert stats["by_error_type"] == {"t2": 1, "t3": 1, "t4": 1}
    assert stats["by_status"] == {"502": 1, "503": 1, "504": 1}
    assert stats["by_model"] == {"m2": 1, "m3": 1, "m4": 1}


def test_bounded_under_load() -> None:
    store = ErrorStore(capacity=100)
    for i in range(10_000):
        record(store, f"req_{i}", model=f"model-{i}")
    assert len(store) == 100
    assert len(store._by_id) == 100
    assert len(store.stats()["by_model"]) == 100
    assert store.stats()["total_recorded"] == 10_000


def test_duplicate_correlation_id() -> None:
    store = ErrorStore(capacity=2)
    record(store, "same", message="first")
    record(store, "same", message="second")
    got = store.get("same")
    assert got is not None and got["message"] == "second"
    record(store, "other")  # evicts the first "same": the newer one stays reachable
    got = store.get("same")
    assert got is not None and got["message"] == "second"
    record(store, "third")
    assert store.get("same") is None


def test_stats() -> None:
    store = ErrorStore(clock=fake_clock())
    empty = store.stats()
    assert empty["size"] == 0
    assert empty["oldest"] is None and empty["newest"] is None
    record(store, "a", status=429, error_type="rate_limit_error")
    record(store, "b", status=429, error_type="rate_limit_error", model=None)
    record(store, "c", status=500, error_type="api_error", model="gpt-x")
    stats = store.stats()
    assert stats["by_error_type"] == {"rate_limit_error": 2, "api_error": 1}
    assert stats["by_status"] == {"429": 2, "500": 1}
    assert stats["by_model"] == {"claude-sonnet-4-5": 1, "unknown": 1, "gpt-x": 1}
    assert stats["total_recorded"] == 3
    assert stats["oldest_timestamp"] == 1_700_000_000.0
    assert stats["newest_timestamp"] == 1_700_000_002.0
    assert stats["oldest"] == "2023-11-14T22:13:20.000Z"
    assert stats["newest"] == "2023-11-14T22:13:22.000Z"
    store.clear()
    assert len(store) == 0 and store.stats()["by_status"] == {}


def test_invalid_capacity() -> None:
    with pytest.raises(ValueError):
        ErrorStore(capacity=0)


# -- scrubbing ------------------------------------------------------------------------


def test_scrub_given_secrets() -> None:
    text = f"upstream said: bad key {CLIENT_KEY}!"
    assert scrub(text, [CLIENT_KEY]) == f"upstream said: bad key {REDACTED}!"
    assert scrub("nothing here", ["", "absent"]) == "nothing here"  # empty secret ignored
    # a secret containing another is replaced whole
    assert scrub("x abcdef y", ["abc", "abcdef"]) == f"x {REDACTED} y"


def test_scrub_token_shapes() -> None:
    assert scrub("Authorization: Bearer abc.DEF-123_x/y+z==") == f"Authorization: Bearer {REDACTED}"
    assert scrub("bearer tok12345") == f"bearer {REDACTED}"
    assert scrub(f"key={UPSTREAM_KEY}; next") == f"key={REDACTED}; next"
    assert scrub("short sk-or-abc") == f"short {REDACTED}"
    assert scrub("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA") == REDACTED
    assert scrub('{"api_key":"sk-proj-ABCDEFGHIJKLMNOPQRSTUV"}') == f'{{"api_key":"{REDACTED}"}}'
    # ordinary words are left alone
    for harmless in ("task-or-job", "risk-free", "the bearer of bad news", "sk-short"):
        assert scrub(harmless) == harmless


def test_make_scrubber() -> None:
    s = make_scrubber([CLIENT_KEY])
    assert s(f"{CLIENT_KEY} and Bearer xyz12345") == f"{REDACTED} and Bearer {REDACTED}"


def test_record_never_stores_secrets() -> None:
    store = ErrorStore(secrets=[CLIENT_KEY, "upstream-secret-value"])
    record(
        store,
        "req_s",
        message=f"401 from upstream for key {CLIENT_KEY} (Bearer {UPSTREAM_KEY})",
        model=f"model-{CLIENT_KEY}",
        detail={
            "headers": {
                "Authorization": "Basic dXNlcjpwYXNz",
                "X-Api-Key": "whatever-it-is",
                "content-type": "application/json",
            },
            "upstream_body": '{"error":"invalid key upstream-secret-value"}',
            "attempts": [{"auth": f"Bearer {UPSTREAM_KEY}"}, 2, None, True, 1.5],
            f"key-{CLIENT_KEY}": "k",
            "raw": b"bytes with upstream-secret-value",
        },
    )
    entry = store.get("req_s")
    dumped = orjson.dumps(entry).decode()
    for secret in (CLIENT_KEY, UPSTREAM_KEY, "upstream-secret-value", "dXNlcjpwYXNz", "whatever"):
        assert secret not in dumped
    assert entry is not None
    assert entry["detail"]["headers"]["Authorization"] == REDACTED
    assert entry["detail"]["headers"]["X-Api-Key"] == REDACTED
    assert entry["detail"]["headers"]["content-type"] == "application/json"
    assert entry["detail"]["attempts"][1:] == [2, None, True, 1.5]
    assert f"key-{REDACTED}" in entry["detail"]


def test_secrets_can_be_added_later() -> None:
    store = ErrorStore()
    store.add_secret("late-secret-123")
    record(store, "r", message="saw late-secret-123")
    assert store.get("r")["message"] == f"saw {REDACTED}"  # type: ignore[index]


def test_entries_are_bounded_in_size() -> None:
    store = ErrorStore(max_text=100)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(50):
        node["next"] = {}
        node = node["next"]
    record(
        store,
        "big",
        message="x" * 1_000_000,
        detail={"body": "y" * 1_000_000, "list": list(range(10_000)), "deep": deep},
    )
    entry = store.get("big")
    assert entry is not None
    assert len(entry["message"]) < 200
    assert len(entry["detail"]["body"]) < 200
    assert len(entry["detail"]["list"]) == 101
    assert len(orjson.dumps(entry)) < 5_000
