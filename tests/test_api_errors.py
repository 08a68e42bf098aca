"""Errors as clients see them: Anthropic envelopes, statuses, SDK exception types, headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from conftest import CLIENT_KEY, MODEL, chat_requests, message_body, parse_sse, user
from openrouter_anthropic.fake_upstream import FakeOpenRouter, MidstreamError, Reply


def assert_envelope(resp: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    """The Anthropic error shape, with the request id in the body and the header."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"].startswith("req_")
    assert resp.headers["request-id"] == body["request_id"]
    return body


def sdk_error(exc_type: type[anthropic.APIStatusError], status: int, error_type: str,
              call: Callable[[], Any]) -> anthropic.APIStatusError:
    with pytest.raises(exc_type) as info:
        call()
    err = info.value
    assert err.status_code == status
    assert isinstance(err.body, dict)
    assert_envelope(err.response, status, error_type)
    assert err.request_id == err.response.headers["request-id"]
    return err


def create(client: anthropic.Anthropic, **extra: Any) -> Callable[[], Any]:
    return lambda: client.messages.create(**message_body(**extra))


def raw_create(client: anthropic.Anthropic, body: dict[str, Any]) -> Callable[[], Any]:
    """A POST through the SDK's own transport (typed errors) with any body at all."""
    return lambda: client.post("/v1/messages", body=body, cast_to=object)


# ---------------------------------------------------------------- request validation

def test_unknown_model_is_404_listing_aliases(client: anthropic.Anthropic,
                                              fake: FakeOpenRouter) -> None:
    err = sdk_error(anthropic.NotFoundError, 404, "not_found_error",
                    create(client, model="mystery-model"))
    message = err.response.json()["error"]["message"]
    assert "mystery-model" in message and "big" in message and "small" in message
    assert not fake.requests


def test_missing_max_tokens_is_400_not_422(client: anthropic.Anthropic) -> None:
    body = {"model": MODEL, "messages": user("hi")}
    err = sdk_error(anthropic.BadRequestError, 400, "invalid_request_error",
                    raw_create(client, body))
    assert "max_tokens" in err.response.json()["error"]["message"]


def test_malformed_json_is_400(http: httpx2.Client) -> None:
    resp = http.post("/v1/messages", content=b'{"model": "claude-sonnet-4-5", "max',
                     headers={"content-type": "application/json"})
    assert_envelope(resp, 400, "invalid_request_error")


def test_unknown_content_block_type_is_named(client: anthropic.Anthropic,
                                             fake: FakeOpenRouter) -> None:
    body = {**message_body(), "messages": [
        {"role": "user", "content": [{"type": "hologram", "data": "xyz"}]}]}
    err = sdk_error(anthropic.BadRequestError, 400, "invalid_request_error",
                    raw_create(client, body))
    assert "hologram" in err.response.json()["error"]["message"]
    assert not fake.requests


# ---------------------------------------------------------------- upstream errors

def test_upstream_429_is_rate_limit_with_retry_after(client: anthropic.Anthropic,
                                                     fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=429, retry_after=7))
    err = sdk_error(anthropic.RateLimitError, 429, "rate_limit_error", create(client))
    assert err.response.headers["retry-after"] == "7"


def test_gateway_retries_503_and_passes_long_retry_after(
        make_gateway: Callable[..., str], make_client: Callable[..., anthropic.Anthropic],
        fake: FakeOpenRouter) -> None:
    url = make_gateway(max_retries=2, retry_base_delay=0.01, retry_max_delay=0.02,
                       retry_max_wait=1.0)
    fake.script(Reply(status=503), Reply(status=503), Reply(text="third time lucky"))
    with make_client(base_url=url) as sdk:
        assert sdk.messages.create(**message_body()).content[0].text == "third time lucky"
        # A Retry-After longer than the gateway will wait goes to the client at once.
        fake.script(Reply(status=429, retry_after=30))
        err = sdk_error(anthropic.RateLimitError, 429, "rate_limit_error", create(sdk))
    assert err.response.headers["retry-after"] == "30"
    assert len(chat_requests(fake)) == 4


def test_upstream_503_is_529_overloaded(client: anthropic.Anthropic,
                                        fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=503))
    err = sdk_error(anthropic.OverloadedError, 529, "overloaded_error", create(client))
    assert err.response.headers.get("x-should-retry") != "false"


def test_upstream_503_is_529_overloaded_when_streaming(client: anthropic.Anthropic,
                                                       fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=503))

    def call() -> None:
        with client.messages.stream(**message_body()) as stream:
            stream.get_final_message()

    sdk_error(anthropic.OverloadedError, 529, "overloaded_error", call)


def test_upstream_context_length_becomes_prompt_too_long(client: anthropic.Anthropic,
                                                         fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=400, error_message=(
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130000 tokens.")))
    err = sdk_error(anthropic.BadRequestError, 400, "invalid_request_error", create(client))
    message = err.response.json()["error"]["message"]
    assert message.startswith("prompt is too long: 130000 tokens > 128000 maximum")


def test_upstream_401_is_authentication_error(client: anthropic.Anthropic,
                                              fake: FakeOpenRouter) -> None:
    fake.script(Reply(status=401))
    err = sdk_error(anthropic.AuthenticationError, 401, "authentication_error",
                    create(client))
    assert err.response.headers["x-should-retry"] == "false"


# ---------------------------------------------------------------- errors inside a stream

OVERLOADED = MidstreamError(code=502, message="Provider disconnected",
                            error_type="provider_overloaded")


def raw_stream(http: httpx2.Client) -> tuple[str, list[tuple[str | None, dict[str, Any]]]]:
    """The request-id header and the events of a streamed answer."""
    with http.stream("POST", "/v1/messages", json=message_body(stream=True)) as resp:
        assert resp.status_code == 200
        return resp.headers["request-id"], parse_sse(resp.read().decode())


def test_midstream_error_raises_in_sdk(client: anthropic.Anthropic,
                                       fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="a fairly long answer that gets cut off midway",
                      midstream_error=OVERLOADED))
    with (pytest.raises(anthropic.APIStatusError) as info,
          client.messages.stream(**message_body()) as stream):
        stream.get_final_message()
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"


def test_midstream_error_event_is_last(http: httpx2.Client, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="a fairly long answer that gets cut off midway",
                      midstream_error=OVERLOADED))
    request_id, events = raw_stream(http)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert "content_block_delta" in names
    assert names[-1] == "error" and names.count("error") == 1
    assert "message_delta" not in names and "message_stop" not in names
    error = events[-1][1]
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"
    # anthropic-compat.md 7.11: the error event carries the request id, like every error.
    assert error.get("request_id") == request_id


def test_eof_without_finish_is_error_event(http: httpx2.Client, fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="an answer that simply stops without a finish reason",
                      eof_without_finish=True))
    _, events = raw_stream(http)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "error" and names.count("error") == 1
    assert "message_stop" not in names and "message_delta" not in names
    error = events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] in ("api_error",
                                                                   "overloaded_error")


# ---------------------------------------------------------------- routes and size

def test_unknown_route_is_anthropic_404(http: httpx2.Client) -> None:
    assert_envelope(http.get("/v1/no-such-endpoint"), 404, "not_found_error")
    assert_envelope(http.post("/v1/messages/batches/nope", json={}), 404, "not_found_error")


def test_body_over_limit_is_413(make_gateway: Callable[..., str],
                                make_client: Callable[..., anthropic.Anthropic],
                                fake: FakeOpenRouter) -> None:
    url = make_gateway(max_body_bytes=2000)
    with make_client(base_url=url) as sdk:
        assert sdk.messages.create(**message_body("small")).content
        sdk_error(anthropic.ContentTooLargeError, 413, "request_too_large",
                  lambda: sdk.messages.create(**message_body("x" * 5000)))
    assert len([r for r in fake.requests if r.path.endswith("/chat/completions")]) == 1


# ---------------------------------------------------------------- client keys

@pytest.fixture
def keyed_url(make_gateway: Callable[..., str]) -> str:
    return make_gateway(proxy_api_keys=("k1",))


def test_missing_client_key_is_401(keyed_url: str) -> None:
    resp = httpx2.post(f"{keyed_url}/v1/messages", json=message_body())
    assert_envelope(resp, 401, "authentication_error")
    assert resp.headers["x-should-retry"] == "false"


def test_wrong_client_key_is_401(keyed_url: str,
                                 make_client: Callable[..., anthropic.Anthropic]) -> None:
    with make_client(base_url=keyed_url, api_key=CLIENT_KEY) as sdk:
        err = sdk_error(anthropic.AuthenticationError, 401, "authentication_error",
                        create(sdk))
    assert err.response.headers["x-should-retry"] == "false"
    resp = httpx2.post(f"{keyed_url}/v1/messages", json=message_body(),
                       headers={"x-api-key": "k2"})
    assert_envelope(resp, 401, "authentication_error")


def test_valid_client_key_as_x_api_key_or_bearer(
        keyed_url: str, make_client: Callable[..., anthropic.Anthropic]) -> None:
    resp = httpx2.post(f"{keyed_url}/v1/messages", json=message_body(),
                       headers={"x-api-key": "k1", "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text
    with make_client(base_url=keyed_url, api_key="k1") as sdk:  # SDK 2.x: Bearer
        assert sdk.messages.create(**message_body()).content
        assert sdk.models.list().data
