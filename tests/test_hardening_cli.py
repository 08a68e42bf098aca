"""Hardening: the command line as a subprocess (`python -m openrouter_anthropic ...`):
refusing unsafe binds, starting, `doctor`, config errors, and draining on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import message_body, parse_sse
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply
from openrouter_anthropic.settings import _ENV_NAMES, Settings
from redis_server import free_port

CLI = [sys.executable, "-m", "openrouter_anthropic"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any gateway setting, plus `extra`."""
    names = {_ENV_NAMES.get(f.name, f.name.upper()) for f in fields(Settings)}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(FETCH_MODEL_LIST="false", PYTHONUNBUFFERED="1", **extra)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 20.0
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], port: int
            ) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"serve exited with {proc.returncode}:\n{err}\n{out}")
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /health within 15 s")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.communicate()


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


# ---------------------------------------------------------------- serve

def test_serve_all_interfaces_without_keys_is_refused(fake: FakeOpenRouter) -> None:
    result = run(["serve", "--host", "0.0.0.0", "--port", str(free_port())],
                 clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k"))
    assert result.returncode == 2, result.stderr
    assert "PROXY_API_KEYS" in result.stderr
    assert "--allow-unauthenticated" in result.stderr


def test_serve_all_interfaces_with_allow_unauthenticated_starts(fake: FakeOpenRouter) -> None:
    port = free_port()
    env = clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k")
    args = ["serve", "--host", "0.0.0.0", "--port", str(port), "--allow-unauthenticated"]
    with serving(args, env, port):
        resp = httpx2.post(f"http://127.0.0.1:{port}/v1/messages", json=message_body("cli"),
                           timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["content"][0]["text"] == "Echo: cli"


def test_sigterm_on_an_idle_server_exits_0_promptly(fake: FakeOpenRouter) -> None:
    port = free_port()
    env = clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k")
    with serving(["serve", "--port", str(port)], env, port) as proc:
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(5)
        took = time.monotonic() - signalled
        _, err = proc.communicate()
    assert took < 3.0
    assert code == 0, f"exit status {code} after SIGTERM; stderr:\n{err[-2000:]}"
    # Cutting a stream at the end of the grace period is planned, not a crash.
    assert "Exception in ASGI application" not in err, err[-3000:]


def test_serve_with_keys_on_all_interfaces_starts_and_checks_keys(
    fake: FakeOpenRouter,
) -> None:
    port = free_port()
    env = clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k",
                    PROXY_API_KEYS="cli-key-1,cli-key-2")
    with serving(["serve", "--host", "0.0.0.0", "--port", str(port)], env, port):
        url = f"http://127.0.0.1:{port}/v1/messages"
        assert httpx2.post(url, json=message_body(), timeout=10).status_code == 401
        ok = httpx2.post(url, json=message_body(), headers={"x-api-key": "cli-key-2"},
                         timeout=10)
        assert ok.status_code == 200, ok.text


def test_config_file_with_an_unknown_key_is_refused(tmp_path: Path,
                                                    fake: FakeOpenRouter) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("big_model: openai/gpt-4o\nbigg_model_typo: openai/gpt-4o\n")
    env = clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k")
    result = run(["serve", "--config", str(config), "--port", str(free_port())], env)
    assert result.returncode == 2, result.stderr
    assert "bigg_model_typo" in result.stderr
    doctor = run(["doctor", "--config", str(config)], env)
    assert doctor.returncode == 1
    assert "bigg_model_typo" in doctor.stdout + doctor.stderr


@pytest.mark.parametrize(("name", "value", "setting"), [
    ("OPENROUTER_ANTHROPIC_PORT", "99999", "port"),
    ("MAX_RETRIES", "lots", "max_retries"),
    ("OPENROUTER_BASE_URL", "ftp://nowhere", "openrouter_base_url"),
    ("IDLE_TIMEOUT", "0", "idle_timeout"),
])
def test_bad_setting_in_the_environment_is_refused(name: str, value: str,
                                                   setting: str) -> None:
    result = run(["serve"], clean_env(OPENROUTER_API_KEY="k", **{name: value}))
    assert result.returncode == 2, result.stderr
    assert setting in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- doctor

def test_doctor_against_a_running_upstream(fake: FakeOpenRouter) -> None:
    result = run(["doctor"], clean_env(OPENROUTER_BASE_URL=fake.base_url,
                                       OPENROUTER_API_KEY="sk-or-v1-doctor"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upstream answers" in result.stdout
    assert "sk-or-v1-doctor" not in result.stdout + result.stderr


def test_doctor_against_a_dead_upstream(fake: FakeOpenRouter) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v1"
    result = run(["doctor"], clean_env(OPENROUTER_BASE_URL=dead, OPENROUTER_API_KEY="k",
                                       CONNECT_TIMEOUT="2"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not reachable" in result.stdout


# ---------------------------------------------------------------- drain on SIGTERM

def test_sigterm_drains_streams_then_exits(fake: FakeOpenRouter) -> None:
    grace = 1.0
    port = free_port()
    fake.chunk_gap = 0.5
    fake.script(Reply(text=" ".join(f"word{i}" for i in range(12))))  # ~6 s of stream
    env = clean_env(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="k",
                    SHUTDOWN_GRACE=str(grace))
    received: list[bytes] = []
    first_delta = threading.Event()
    outcome: dict[str, Any] = {}

    def stream() -> None:
        try:
            with httpx2.stream("POST", f"http://127.0.0.1:{port}/v1/messages",
                               json=message_body(stream=True), timeout=20) as resp:
                outcome["status"] = resp.status_code
                for chunk in resp.iter_raw():
                    received.append(chunk)
                    if b"content_block_delta" in b"".join(received):
                        first_delta.set()
        except httpx2.HTTPError as exc:  # the connection may end without a last chunk
            outcome["error"] = repr(exc)
        finally:
            first_delta.set()

    with serving(["serve", "--port", str(port)], env, port) as proc:
        client = threading.Thread(target=stream, daemon=True)
        client.start()
        assert first_delta.wait(10), "no content arrived"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # New connections are refused while the in-flight stream is still draining.
        refused_while_alive = False
        while proc.poll() is None and time.monotonic() - signalled < grace:
            if refused(port):
                refused_while_alive = proc.poll() is None
                break
            time.sleep(0.05)
        code = proc.wait(grace + 3)
        exited_after = time.monotonic() - signalled
        client.join(5)
        _, err = proc.communicate()
    assert exited_after <= grace + 3
    assert refused_while_alive, "the server still accepted connections after SIGTERM"
    assert outcome.get("status") == 200
    events = parse_sse(b"".join(received).decode())
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    last_name, last = events[-1]
    if last_name == "error":
        assert last["error"]["type"] == "overloaded_error", last
        assert "shutting down" in last["error"]["message"]
    else:
        assert last_name == "message_stop", names[-5:]
    assert code == 0, f"exit status {code} after SIGTERM; stderr:\n{err[-2000:]}"
    # Cutting a stream at the end of the grace period is planned, not a crash.
    assert "Exception in ASGI application" not in err, err[-3000:]
