"""Message Batches API through the real server (local executor, SQLite store), with the
official SDK (`client.messages.batches.*`) and raw HTTP, against a fake OpenRouter scripted
per request (tests/batches_fake.py)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx2
import orjson
import pytest

from batches_fake import ScriptedFake, params, running_scripted_fake
from batches_pg import shared_cluster

KEY_A, KEY_B = "batch-key-a", "batch-key-b"
_counter = itertools.count()


@pytest.fixture(scope="session")
def _scripted() -> Iterator[ScriptedFake]:
    with running_scripted_fake() as fake:
        yield fake


@pytest.fixture
def sfake(_scripted: ScriptedFake) -> Iterator[ScriptedFake]:
    _scripted.reset()
    yield _scripted
    _scripted.reset()


@pytest.fixture
def start(make_gateway: Callable[..., str], sfake: ScriptedFake,
          tmp_path: Path) -> Callable[..., str]:
    """A gateway with its own SQLite batch store; `batches` settings on top of quick ones."""

    def start(settings: dict[str, Any] | None = None, **batches: Any) -> str:
        config = {"database_url": f"sqlite:///{tmp_path}/batches-{next(_counter)}.db",
                  "poll_interval": 0.1, "retry_base_delay": 0.02, "retry_max_delay": 0.1,
                  **batches}
        return make_gateway(openrouter_base_url=sfake.base_url,
                            proxy_api_keys=(KEY_A, KEY_B), batches=config,
                            **(settings or {}))

    return start


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The tests that take this run on both stores (PostgreSQL: the session's cluster)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return shared_cluster().create_database("api")


def sdk(url: str, key: str = KEY_A) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=20.0)


def raw(url: str, key: str = KEY_A, bearer: bool = False) -> httpx2.Client:
    auth = {"authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
    return httpx2.Client(base_url=url, timeout=20.0,
                         headers={**auth, "anthropic-version": "2023-06-01"})


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.processing_status}: {batch}"
        time.sleep(0.05)


def item(custom_id: str, *directives: str, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": params(custom_id, *directives, **extra)}


def assert_error(response: httpx2.Response, status: int, error_type: str,
                 contains: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type, body
    assert contains in body["error"]["message"], body
    assert body["request_id"].startswith("req_")


# ---------------------------------------------------------------- the SDK end to end


def test_sdk_mixed_batch(start: Callable[..., str], sfake: ScriptedFake, store: str) -> None:
    """ok, 500 -> errored api_error, 429 once -> succeeded, invalid params -> errored and
    never sent, stream: true -> a whole message."""
    url = start(database_url=store)
    client = sdk(url)
    invalid = {"model": "claude-sonnet-4-5", "max_tokens": 0,
               "messages": [{"role": "user", "content": "id=bad-zero; hi"}]}
    requests = [
        item("ok"), item("boom", "[500]"), item("limited", "[429-once]"),
        {"custom_id": "bad-zero", "params": invalid},
        {"custom_id": "bad-role", "params": {**params("bad-role"), "messages": [
            {"role": "robot", "content": "id=bad-role;"}]}},
        {"custom_id": "bad-empty", "params": {**params("bad-empty"), "messages": []}},
        {"custom_id": "bad-missing", "params": {k: v for k, v in params("bad-missing").items()
                                                if k != "max_tokens"}},
        item("streamed", stream=True), item("overloaded", "[503-once]"),
    ]
    created = client.messages.batches.create(requests=requests)
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.ended_at is None and created.cancel_initiated_at is None
    assert created.archived_at is None
    assert created.request_counts.processing == len(requests)
    assert (created.expires_at - created.created_at).total_seconds() == pytest.approx(86400)

    ended = wait_ended(client, created.id)
    counts = ended.request_counts
    assert (counts.succeeded, counts.errored, counts.canceled, counts.expired,
            counts.processing) == (4, 5, 0, 0, 0)
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at
    assert ended.results_url == f"{url}/v1/messages/batches/{created.id}/results"

    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert set(results) == {r["custom_id"] for r in requests}
    for custom_id in ("ok", "limited", "streamed", "overloaded"):
        result = results[custom_id]
        assert result.type == "succeeded", (custom_id, result)
        assert result.message.type == "message" and result.message.role == "assistant"
        assert result.message.model == "claude-sonnet-4-5"
        assert result.message.content[0].type == "text"
    boom = results["boom"]
    assert boom.type == "errored" and boom.error.error.type == "api_error"
    for custom_id in ("bad-zero", "bad-role", "bad-empty", "bad-missing"):
        result = results[custom_id]
        assert result.type == "errored" and result.error.type == "error"
        assert result.error.error.type == "invalid_request_error", result
        assert sfake.count(custom_id) == 0  # never sent upstream
    assert "greater than or equal to 1" in results["bad-zero"].error.error.message
    assert "max_tokens: Field required" in results["bad-missing"].error.error.message
    assert sfake.count("ok") == sfake.count("streamed") == 1
    assert sfake.count("limited") == sfake.count("overloaded") == 2
    assert sfake.count("boom") == 5  # batches.max_attempts
    # Every upstream call was a plain (non-streaming) completion.
    assert not any(r.body.get("stream") for r in sfake.requests)


def test_retries_backoff_retry_after_and_error_types(start: Callable[..., str],
                                                    sfake: ScriptedFake) -> None:
    """429/5xx/timeouts are retried up to max_attempts, with growing waits or the upstream's
    Retry-After; then the request ends errored with the mapped type. Other 4xx: no retry."""
    url = start({"first_byte_timeout": 0.3}, max_attempts=3, retry_base_delay=0.2,
                retry_max_delay=0.4)
    client = sdk(url)
    batch = client.messages.batches.create(requests=[
        item("e500", "[500]"), item("e429", "[429]"), item("e503", "[503]"),
        item("e400", "[400]"), item("slow", "[hang]"), item("after", "[429-once=0.6]"),
        item("fine")])
    wait_ended(client, batch.id, timeout=30)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    expected = {"e500": "api_error", "e429": "rate_limit_error", "e503": "overloaded_error",
                "e400": "invalid_request_error", "slow": "timeout_error"}
    for custom_id, error_type in expected.items():
        result = results[custom_id]
        assert result.type == "errored" and result.error.error.type == error_type, result
        assert sfake.count(custom_id) == (1 if custom_id == "e400" else 3), custom_id
    assert results["after"].type == results["fine"].type == "succeeded"
    # Exponential backoff: the n-th retry waits at least base * 2^(n-1) / 2.
    first, second, third = sfake.times["e500"]
    assert second - first >= 0.1 and third - second >= 0.2
    # Retry-After (0.6 s) wins over the backoff (at most 0.2 s for a first retry).
    one, two = sfake.times["after"]
    assert two - one >= 0.6


def test_concurrency_is_a_global_limit(start: Callable[..., str], sfake: ScriptedFake) -> None:
    """Two batches at once, chunks of 2: never more than `concurrency` calls upstream."""
    url = start(concurrency=3, chunk_size=2)
    client = sdk(url)
    batches = [client.messages.batches.create(
        requests=[item(f"b{b}-{i}", "[slow=0.1]") for i in range(8)]) for b in range(2)]
    for batch in batches:
        wait_ended(client, batch.id)
    assert sfake.max_in_flight == 3
    assert sum(sfake.snapshot().values()) == 16


def test_async_sdk_and_bearer(start: Callable[..., str]) -> None:
    import asyncio

    url = start()

    async def run() -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=url, api_key=KEY_A, max_retries=0,
                                            timeout=20.0) as client:
            batch = await client.messages.batches.create(requests=[item("x"), item("y")])
            for _ in range(400):
                if (await client.messages.batches.retrieve(batch.id)).processing_status \
                        == "ended":
                    break
                await asyncio.sleep(0.05)
            page = await client.messages.batches.list(limit=5)
            assert [b.id for b in page.data] == [batch.id]
            return sorted([r.custom_id async for r in
                           await client.messages.batches.results(batch.id)])

    assert asyncio.run(run()) == ["x", "y"]


# ---------------------------------------------------------------- raw HTTP, every endpoint


def test_raw_http_every_endpoint(start: Callable[..., str]) -> None:
    url = start()
    with raw(url) as http:
        created = http.post("/v1/messages/batches", json={"requests": [item("one"),
                                                                       item("two")]})
        assert created.status_code == 200, created.text
        batch = created.json()
        assert set(batch) == {"id", "type", "processing_status", "request_counts", "ended_at",
                              "created_at", "expires_at", "archived_at",
                              "cancel_initiated_at", "results_url"}
        assert created.headers["request-id"].startswith("req_")
        batch_id = batch["id"]
        deadline = time.monotonic() + 20
        while batch["processing_status"] != "ended":
            assert time.monotonic() < deadline
            time.sleep(0.05)
            batch = http.get(f"/v1/messages/batches/{batch_id}").json()
        assert batch["request_counts"] == {"processing": 0, "succeeded": 2, "errored": 0,
                                           "canceled": 0, "expired": 0}
        for stamp in ("created_at", "expires_at", "ended_at"):
            assert batch[stamp].endswith("Z")

        listed = http.get("/v1/messages/batches").json()
        assert listed == {"data": [batch], "has_more": False, "first_id": batch_id,
                          "last_id": batch_id}

        canceled = http.post(f"/v1/messages/batches/{batch_id}/cancel")
        assert canceled.status_code == 200 and canceled.json() == batch  # ended: a no-op

    # The results link works verbatim with the key as a Bearer token (SDK 2.x).
    with raw(url, bearer=True) as http:
        results = http.get(urlsplit(batch["results_url"]).path,
                           headers={"accept": "application/binary"})
        assert results.status_code == 200
        assert results.headers["content-type"] == "application/binary"
        lines = results.content.splitlines()
        assert len(lines) == 2 and results.content.endswith(b"\n")
        decoded = {line["custom_id"]: line["result"] for line in map(orjson.loads, lines)}
        assert set(decoded) == {"one", "two"}
        assert all(r["type"] == "succeeded" and r["message"]["type"] == "message"
                   for r in decoded.values())

        deleted = http.delete(f"/v1/messages/batches/{batch_id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": batch_id, "type": "message_batch_deleted"}
        for method, path in (("GET", ""), ("POST", "/cancel"), ("DELETE", ""),
                             ("GET", "/results")):
            assert_error(http.request(method, f"/v1/messages/batches/{batch_id}{path}"), 404,
                         "not_found_error", batch_id)
        assert http.get("/v1/messages/batches").json()["data"] == []
        assert_error(http.put("/v1/messages/batches"), 405, "invalid_request_error")
        assert_error(http.get(f"/v1/messages/batches/{batch_id}/nope"), 404, "not_found_error")


def test_unknown_ids_are_404(start: Callable[..., str]) -> None:
    client = sdk(start())
    for call in (client.messages.batches.retrieve, client.messages.batches.cancel,
                 client.messages.batches.delete):
        with pytest.raises(anthropic.NotFoundError):
            call("msgbatch_01NOPE")
    with pytest.raises(anthropic.NotFoundError):
        list(client.messages.batches.results("msgbatch_01NOPE"))


def test_results_url_uses_public_base_url_or_host(start: Callable[..., str]) -> None:
    public = start({"public_base_url": "https://gw.example.com/llm/"})
    client = sdk(public)
    batch = client.messages.batches.create(requests=[item("p")])
    done = wait_ended(client, batch.id)
    assert done.results_url == (f"https://gw.example.com/llm/v1/messages/batches/{batch.id}"
                                "/results")
    by_host = start()
    with raw(by_host) as http:
        created = http.post("/v1/messages/batches", json={"requests": [item("h")]}).json()
        deadline = time.monotonic() + 20
        while True:
            seen = http.get(f"/v1/messages/batches/{created['id']}",
                            headers={"host": "gateway.internal:8443",
                                     "x-forwarded-proto": "https"}).json()
            if seen["processing_status"] == "ended":
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert seen["results_url"] == (f"https://gateway.internal:8443/v1/messages/batches/"
                                       f"{created['id']}/results")


def test_a_batch_belongs_to_its_key(start: Callable[..., str]) -> None:
    url = start()
    owner, other = sdk(url, KEY_A), sdk(url, KEY_B)
    batch = owner.messages.batches.create(requests=[item("mine")])
    wait_ended(owner, batch.id)
    for call in (other.messages.batches.retrieve, other.messages.batches.cancel,
                 other.messages.batches.delete):
        with pytest.raises(anthropic.NotFoundError):
            call(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        list(other.messages.batches.results(batch.id))
    assert list(other.messages.batches.list()) == []
    assert [b.id for b in owner.messages.batches.list()] == [batch.id]
    with raw(url, "not-a-key") as http:
        assert_error(http.get("/v1/messages/batches"), 401, "authentication_error")


def test_list_defaults_to_20(start: Callable[..., str]) -> None:
    url = start()
    with raw(url) as http:
        ids = [http.post("/v1/messages/batches", json={"requests": [item(f"d{i}")]}).json()["id"]
               for i in range(21)]
        page = http.get("/v1/messages/batches").json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:20] and page["has_more"]


def test_list_pages_both_ways(start: Callable[..., str], store: str) -> None:
    url = start(database_url=store)
    client = sdk(url)
    ids = [client.messages.batches.create(requests=[item(f"n{i}")]).id for i in range(5)]
    newest_first = ids[::-1]
    # The SDK's auto-pagination follows after_id = last_id.
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first
    with raw(url) as http:
        page1 = http.get("/v1/messages/batches", params={"limit": 2}).json()
        assert [b["id"] for b in page1["data"]] == newest_first[:2]
        assert (page1["has_more"], page1["first_id"], page1["last_id"]) == (
            True, newest_first[0], newest_first[1])
        page2 = http.get("/v1/messages/batches",
                         params={"limit": 2, "after_id": page1["last_id"]}).json()
        assert [b["id"] for b in page2["data"]] == newest_first[2:4] and page2["has_more"]
        page3 = http.get("/v1/messages/batches",
                         params={"limit": 2, "after_id": page2["last_id"]}).json()
        assert [b["id"] for b in page3["data"]] == newest_first[4:]
        assert not page3["has_more"]
        back = http.get("/v1/messages/batches",
                        params={"limit": 2, "before_id": page3["first_id"]}).json()
        assert [b["id"] for b in back["data"]] == newest_first[2:4] and back["has_more"]
        back2 = http.get("/v1/messages/batches",
                         params={"limit": 2, "before_id": back["first_id"]}).json()
        assert [b["id"] for b in back2["data"]] == newest_first[:2] and not back2["has_more"]
        top = http.get("/v1/messages/batches", params={"before_id": newest_first[0]}).json()
        assert top == {"data": [], "has_more": False, "first_id": None, "last_id": None}
        everything = http.get("/v1/messages/batches", params={"limit": 1000}).json()
        assert [b["id"] for b in everything["data"]] == newest_first
        for bad in ("0", "1001", "x"):
            assert_error(http.get("/v1/messages/batches", params={"limit": bad}), 400,
                         "invalid_request_error", "limit")


# ---------------------------------------------------------------- cancel, delete, expiry


def test_cancel_a_slow_batch(start: Callable[..., str], sfake: ScriptedFake,
                             store: str) -> None:
    url = start(concurrency=3, database_url=store)
    client = sdk(url)
    batch = client.messages.batches.create(
        requests=[item(f"s{i}", "[slow=0.4]") for i in range(12)])
    deadline = time.monotonic() + 20
    while client.messages.batches.retrieve(batch.id).request_counts.succeeded < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    disconnects = sfake.disconnects
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status in ("canceling", "ended")
    assert canceling.cancel_initiated_at is not None
    done = wait_ended(client, batch.id)
    counts = done.request_counts
    assert counts.canceled >= 1 and counts.processing == 0
    assert counts.succeeded + counts.canceled + counts.errored == 12
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert len(results) == 12 and list(results.values()).count("canceled") == counts.canceled
    # The calls in flight were aborted: the fake saw its clients hang up.
    deadline = time.monotonic() + 5
    while sfake.disconnects == disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sfake.disconnects > disconnects
    # Nothing canceled was sent after the cancel; every request went up at most once.
    assert all(sfake.count(f"s{i}") <= 1 for i in range(12))
    again = client.messages.batches.cancel(batch.id)
    assert again.processing_status == "ended" and again.cancel_initiated_at == \
        done.cancel_initiated_at


def test_delete_rules(start: Callable[..., str], store: str) -> None:
    url = start(concurrency=1, database_url=store)
    client = sdk(url)
    batch = client.messages.batches.create(requests=[item("h", "[hang]"), item("q")])
    with raw(url) as http:
        assert_error(http.delete(f"/v1/messages/batches/{batch.id}"), 400,
                     "invalid_request_error", "cancel it first")
        assert_error(http.get(f"/v1/messages/batches/{batch.id}/results"), 400,
                     "invalid_request_error", "in_progress")
    client.messages.batches.cancel(batch.id)
    done = wait_ended(client, batch.id)
    assert done.request_counts.canceled == 2  # the hanging call was aborted
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_expire_after(start: Callable[..., str], sfake: ScriptedFake, store: str) -> None:
    url = start(expire_after="2s", concurrency=2, database_url=store)
    client = sdk(url)
    batch = client.messages.batches.create(
        requests=[item("fast"), item("h1", "[hang]"), item("h2", "[hang]"), item("h3")])
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(2)
    done = wait_ended(client, batch.id, timeout=10)
    assert done.ended_at is not None
    assert (done.ended_at - batch.created_at).total_seconds() == pytest.approx(2, abs=0.8)
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert results["fast"] == "succeeded"
    assert results["h1"] == results["h2"] == "expired"
    counts = done.request_counts
    assert counts.expired + counts.succeeded == 4 and counts.expired >= 2


def test_results_retention_archives(start: Callable[..., str], store: str) -> None:
    url = start(results_retention="1s", database_url=store)
    client = sdk(url)
    batch = client.messages.batches.create(requests=[item("r")])
    wait_ended(client, batch.id)
    deadline = time.monotonic() + 10
    while (seen := client.messages.batches.retrieve(batch.id)).archived_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen.archived_at >= seen.ended_at and seen.request_counts.succeeded == 1
    with raw(url) as http:
        assert_error(http.get(f"/v1/messages/batches/{batch.id}/results"), 404,
                     "not_found_error", "archived")
    assert client.messages.batches.delete(batch.id).id == batch.id


# ---------------------------------------------------------------- bad input: nothing stored


@pytest.mark.parametrize(("body", "message"), [
    (b'{"requests": [', "not valid JSON"),
    (b"[]", "expected a JSON object"),
    (b"{}", "requests: Field required"),
    (b'{"requests": "x"}', "requests: Input should be a valid list"),
    (b'{"requests": []}', "at least 1 item"),
    (b'{"requests": [{"custom_id": "has space", "params": {}}]}', "String should match"),
    (b'{"requests": [{"custom_id": "' + b"x" * 65 + b'", "params": {}}]}',
     "String should match"),
    (b'{"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]}',
     "duplicate custom_id"),
    (b'{"requests": [{"custom_id": "a", "params": "text"}]}', "valid dictionary"),
    (b'{"requests": [{"custom_id": "a"}]}', "params: Field required"),
])
def test_bad_input_is_refused_and_nothing_stored(start: Callable[..., str], body: bytes,
                                                 message: str) -> None:
    url = start()
    with raw(url) as http:
        response = http.post("/v1/messages/batches", content=body,
                             headers={"content-type": "application/json"})
        assert_error(response, 400, "invalid_request_error", message)
        assert http.get("/v1/messages/batches").json()["data"] == []


def test_over_100000_requests_is_refused(start: Callable[..., str]) -> None:
    url = start()
    body = b'{"requests": [' + b",".join([b'{"custom_id":"a","params":{}}'] * 100_001) + b"]}"
    with raw(url) as http:
        assert_error(http.post("/v1/messages/batches", content=body), 400,
                     "invalid_request_error", "at most 100000 items")
        assert http.get("/v1/messages/batches").json()["data"] == []


def test_body_over_256_mb_is_413(start: Callable[..., str]) -> None:
    url = start()
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None and port is not None
    # Declared, not sent: refused from the header before a byte of body is read.
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\n"
                     b"x-api-key: " + KEY_A.encode() + b"\r\ncontent-type: application/json\r\n"
                     b"content-length: " + str(256 * 2**20 + 1).encode() + b"\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert orjson.loads(payload)["error"]["type"] == "request_too_large"
    # Sent without a length: counted as it arrives (batches.max_body_bytes).
    small = start(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"requests": [' + b" " * 2000 + b"]}"

    with raw(small) as http:
        assert_error(http.post("/v1/messages/batches", content=chunks()), 413,
                     "request_too_large")
        assert http.get("/v1/messages/batches").json()["data"] == []
