"""In-process timings of the translation core (no HTTP).

- request direction: a generated ~1 MB Claude Code-like conversation (system blocks with
  the attribution header, 12 tools with JSON schemas, many turns of tool_use/tool_result,
  thinking blocks, a base64 image inside a tool result, mid-conversation `system` turns)
  through `build_chat_request`; also JSON parse and upstream-body serialization, which the
  gateway does around it.
- response direction: 200 OpenRouter chunks (SSE bytes) through the SSE decoder,
  `orjson.loads`, `StreamTranslator.feed` and the Anthropic event encoder.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from .client import median

JSON = dict[str, Any]
_TOOL_NAMES = ["Bash", "Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "LS",
               "WebFetch", "TodoWrite", "Task", "NotebookEdit"]
_TEXT = ("the function returns a value when the file exists and otherwise raises an error "
          "so callers check the path before reading it again in the loop")
_WORDS = _TEXT.split()


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _tool(name: str, rng: random.Random) -> JSON:
    props: JSON = {
        "file_path": {"type": "string", "description": "The absolute path to the file"},
        "command": {"type": "string", "description": _prose(rng, 20)},
        "timeout": {"type": "number", "description": "Optional timeout in milliseconds"},
        "mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
        "edits": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"old_string": {"type": "string"}, "new_string": {"type": "string"},
                           "replace_all": {"type": "boolean", "default": False}},
            "required": ["old_string", "new_string"]}},
    }
    return {"name": name, "description": _prose(rng, 250),
            "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#",
                             "type": "object", "additionalProperties": False,
                             "properties": props, "required": ["file_path"]}}


def _system(rng: random.Random) -> list[JSON]:
    return [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14.abc; "
                                 "cc_entrypoint=cli; cch=00000;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": _prose(rng, 3000), "cache_control": {"type": "ephemeral"}},
    ]


def _image_b64(size: int) -> str:
    # A PNG signature followed by filler: the translator never decodes the pixels.
    raw = b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(size)
    return base64.b64encode(raw).decode()


def _turn(i: int, rng: random.Random, image: str | None) -> list[JSON]:
    call_id = f"toolu_{i:04d}{rng.randrange(16**20):020x}"
    tool = _TOOL_NAMES[i % len(_TOOL_NAMES)]
    assistant: JSON = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": _prose(rng, 60),
         "signature": base64.b64encode(rng.randbytes(96)).decode()},
        {"type": "text", "text": _prose(rng, 40)},
        {"type": "tool_use", "id": call_id, "name": tool,
         "input": {"file_path": f"/work/project/src/module_{i}.py", "command": _prose(rng, 8)}},
    ]}
    result: Any = "\n".join(f"{n:>6}\t{_prose(rng, 12)}" for n in range(1, 80))
    if image is not None:
        result = [{"type": "text", "text": "Screenshot captured"},
                  {"type": "image",
                   "source": {"type": "base64", "media_type": "image/png", "data": image}}]
    user: JSON = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call_id, "content": result},
        {"type": "text", "text": f"<system-reminder>{_prose(rng, 30)}</system-reminder>"},
    ]}
    turn = [assistant, user]
    if i % 7 == 3:
        turn.append({"role": "system", "content": f"<system-reminder>{_prose(rng, 25)}"
                                                  "</system-reminder>"})
    return turn


def conversation(target_bytes: int = 1_000_000, image_bytes: int = 150_000) -> JSON:
    """A deterministic Claude Code-like request body of about `target_bytes` (JSON)."""
    rng = random.Random(0)
    body: JSON = {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
        "system": _system(rng),
        "tools": [_tool(name, rng) for name in _TOOL_NAMES],
        "metadata": {"user_id": '{"device_id":"' + "a" * 64 + '","session_id":"s"}'},
        "thinking": {"type": "enabled", "budget_tokens": 16000},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"<system-reminder>{_prose(rng, 400)}</system-reminder>"},
            {"type": "text", "text": "Fix the failing tests in this repository."}]}],
    }
    image = _image_b64(image_bytes)
    size = len(orjson.dumps(body))
    i = 0
    while size < target_bytes:
        turn = _turn(i, rng, image if i == 5 else None)
        size += len(orjson.dumps(turn))
        body["messages"].extend(turn)
        i += 1
    last = body["messages"][-1]["content"]
    if isinstance(last, list):
        last[-1]["cache_control"] = {"type": "ephemeral"}
    body["messages"].append({"role": "assistant", "content": "Let me look."})
    body["messages"].append({"role": "user", "content": "Continue."})
    return body


def _timed(fn: Callable[[], object], repeat: int, budget: float) -> list[float]:
    fn()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return times


def request_direction(repeat: int = 30, budget: float = 10.0) -> JSON:
    from openrouter_anthropic.profiles import Profiles
    from openrouter_anthropic.translate.request import RequestOptions, build_chat_request

    body = conversation()
    raw = orjson.dumps(body)
    model = "anthropic/claude-sonnet-4"
    profile = Profiles().get(model)
    options = RequestOptions()
    plan = build_chat_request(body, model, profile, options)
    parse = _timed(lambda: orjson.loads(raw), repeat, budget)
    build = _timed(lambda: build_chat_request(body, model, profile, options), repeat, budget)
    dump = _timed(lambda: orjson.dumps(plan.body), repeat, budget)
    return {
        "body_bytes": len(raw),
        "messages": len(body["messages"]),
        "upstream_messages": len(plan.body["messages"]),
        "translate_ms_p50": median(build) * 1000,
        "translate_ms_min": min(build) * 1000,
        "parse_ms_p50": median(parse) * 1000,
        "serialize_ms_p50": median(dump) * 1000,
        "total_ms_p50": (median(parse) + median(build) + median(dump)) * 1000,
    }


def _stream_bytes(chunks: int) -> bytes:
    from .fake import stream_frames

    frames = stream_frames(chunks)[1:-1]  # without the HTTP head and chunked terminator
    # Undo the chunked transfer encoding: "<hex>\r\n<frame>\r\n".
    return b"".join(f.split(b"\r\n", 1)[1][:-2] for f in frames)


def response_direction(chunks: int = 200, repeat: int = 200, budget: float = 5.0) -> JSON:
    from openrouter_anthropic.translate.sse import SSEComment, SSEDecoder, encode_event
    from openrouter_anthropic.translate.stream import StreamTranslator
    from openrouter_anthropic.translate.tools import ToolNames

    raw = _stream_bytes(chunks)
    pieces = raw.split(b"\n\n")
    wire = [p + b"\n\n" for p in pieces if p]  # one network read per SSE event

    def once() -> int:
        decoder = SSEDecoder()
        translator = StreamTranslator("msg_bench", "claude-sonnet-4-5", ToolNames())
        out = [encode_event(n, d) for n, d in translator.start()]
        for piece in wire:
            for item in decoder.feed(piece):
                if isinstance(item, SSEComment) or item.data == "[DONE]":
                    continue
                out.extend(encode_event(n, d) for n, d in translator.feed(orjson.loads(item.data)))
        out.extend(encode_event(n, d) for n, d in translator.finish())
        return len(out)

    times = _timed(once, repeat, budget)
    per_stream = median(times)
    return {"chunks": chunks, "events_out": once(), "stream_ms_p50": per_stream * 1000,
            "per_chunk_us": per_stream / chunks * 1e6}
