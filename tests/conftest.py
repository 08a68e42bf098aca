"""Shared fixtures: a fake OpenRouter and the real gateway served by uvicorn in a thread.

`fake` is one FakeOpenRouter for the whole session, reset before every test.
`gateway_url` is a gateway with default settings pointed at it (one per session; it keeps no
per-test state). `make_gateway(**settings)` starts another one with extra settings for a
single test. `client`/`async_client` are Anthropic SDK clients, `http` a raw HTTP client.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
import uvicorn

from openrouter_anthropic.app import create_app
from openrouter_anthropic.fake_upstream import FakeOpenRouter, running_fake
from openrouter_anthropic.settings import Settings

MODEL = "claude-sonnet-4-5"
UPSTREAM_KEY = "test-upstream-key"
CLIENT_KEY = "test-key"
READ_TOOL: dict[str, Any] = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                     "required": ["file_path"]},
}


# ---------------------------------------------------------------- shared helpers

def chat_requests(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    """Bodies of the chat completion calls the fake received, oldest first."""
    return [r.body for r in fake.requests if r.path.endswith("/chat/completions")]


def last_chat(fake: FakeOpenRouter) -> dict[str, Any]:
    bodies = chat_requests(fake)
    assert bodies, "the gateway made no upstream chat request"
    return bodies[-1]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def message_body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": user(text), **extra}


def parse_sse(raw: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, decoded data) for every event of a raw SSE body; comments skipped."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if name is not None or data:
            events.append((name, orjson.loads("\n".join(data)) if data else {}))
    return events


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ---------------------------------------------------------------- the fake upstream

@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeOpenRouter]:
    with running_fake() as server:
        yield server


@pytest.fixture
def fake(_fake_server: FakeOpenRouter) -> Iterator[FakeOpenRouter]:
    server = _fake_server
    server.reset()
    server.chunk_gap = server.first_byte_delay = 0.0
    server.chunks = None
    yield server
    server.reset()
    server.chunk_gap = server.first_byte_delay = 0.0
    server.chunks = None


# ---------------------------------------------------------------- the gateway

class RunningGateway:
    """The real ASGI app under uvicorn, on its own loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says proto 6; without it every response waits ~40 ms (Nagle).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                loop="asyncio", lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="gateway", daemon=True)

    def start(self) -> RunningGateway:
        self.thread.start()
        if not wait_for(lambda: self.server.started or not self.thread.is_alive(), 10):
            raise RuntimeError("the gateway did not start within 10 s")
        if not self.server.started:
            raise RuntimeError("the gateway failed to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def gateway_settings(fake: FakeOpenRouter, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"openrouter_base_url": fake.base_url,
                              "openrouter_api_key": UPSTREAM_KEY, "fetch_model_list": False}
    if "max_retries" in {f.name for f in dataclasses.fields(Settings)}:
        # Gateway-side upstream retries would hide the error mapping under test; the retry
        # tests turn them back on through make_gateway.
        values["max_retries"] = 0
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def _default_gateway(_fake_server: FakeOpenRouter) -> Iterator[RunningGateway]:
    gateway = RunningGateway(gateway_settings(_fake_server)).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def gateway_url(_default_gateway: RunningGateway, fake: FakeOpenRouter) -> str:
    return _default_gateway.url


@pytest.fixture
def make_gateway(fake: FakeOpenRouter) -> Iterator[Callable[..., str]]:
    """Start a gateway with extra Settings for this test; returns its base URL."""
    started: list[RunningGateway] = []

    def make(**settings: Any) -> str:
        gateway = RunningGateway(gateway_settings(fake, **settings)).start()
        started.append(gateway)
        return gateway.url

    yield make
    for gateway in started:
        gateway.stop()


# ---------------------------------------------------------------- clients

@pytest.fixture
def make_client(gateway_url: str) -> Callable[..., anthropic.Anthropic]:
    def make(base_url: str | None = None, **kwargs: Any) -> anthropic.Anthropic:
        options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 10.0}
        return anthropic.Anthropic(base_url=base_url or gateway_url, **{**options, **kwargs})

    return make


@pytest.fixture
def client(make_client: Callable[..., anthropic.Anthropic]) -> Iterator[anthropic.Anthropic]:
    with make_client() as sdk:
        yield sdk


@pytest.fixture
async def async_client(gateway_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=gateway_url, api_key=CLIENT_KEY,
                                        max_retries=0, timeout=10.0) as sdk:
        yield sdk


@pytest.fixture
def http(gateway_url: str) -> Iterator[httpx2.Client]:
    """A raw HTTP client on the gateway, with no auth or version headers preset."""
    with httpx2.Client(base_url=gateway_url, timeout=10.0) as raw:
        yield raw
